"""Key schema invariants: every script call touches one cluster slot, keys carry the service prefix, and
same-named queues of different services are different keys in (for the sample) different slots."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from enginekit import router_url
from redis.crc import key_slot as _key_slot

from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import connect
from router.storage.envelope import encode_new
from router.storage.keys import QueueKeys, ServiceKeys

NOW = 1_700_000_000_000
ENV = encode_new("svc.task", '{"a":1}', NOW)
Item = protocol.EnqueueItem

def overview_states(q: QueueKeys) -> list[tuple[str, str, bool]]:
    return [("pending", q.pending, True), ("archived", q.archived, False)]


#: One example call per protocol builder; the test below fails when a builder is added without an entry here.
BUILDERS: dict[str, Callable[[QueueKeys], protocol.Call]] = {
    "enqueue": lambda q: protocol.enqueue(q, [Item("t1", ENV), Item("t2", ENV)]),
    "dequeue": lambda q: protocol.dequeue(q, 30_000, 10),
    "ack": lambda q: protocol.ack(q, NOW, [protocol.Completion("t1:1"), protocol.Completion("t2:2", NOW + 5, ENV)]),
    "retry": lambda q: protocol.retry(q, "t1:1", NOW + 1000, ENV, now_ms=NOW),
    "archive": lambda q: protocol.archive(q, "t1:1", NOW, ENV, 100, 86_400_000),
    "requeue": lambda q: protocol.requeue(q, ["t1:1", "t2:2"]),
    "extend": lambda q: protocol.extend(q, 30_000, ["t1:1", "t2:2"]),
    "maintain": lambda q: protocol.maintain(q, NOW, 1000),
    "sweep": lambda q: protocol.sweep(q, 100, 10_000, new_pass=True),
    "quarantine": lambda q: protocol.quarantine(q, NOW, [(b"orphan\0t9", "t9", ENV)]),
    "pause": lambda q: protocol.pause(q, NOW),
    "unpause": protocol.unpause,
    "run": lambda q: protocol.run(q, "*", [("t1", ""), ("t2", ENV)]),
    "delete": lambda q: protocol.delete(q, "*", ["t1", "t2"]),
    "delete_batch": lambda q: protocol.delete_batch(q, "archived", 100),
    "overview": lambda q: protocol.overview(q, overview_states(q), [471_000, 471_001]),
    "page": lambda q: protocol.page(q, q.pending, "l", 10, 5, "t1", 3),
    "cron_fire": lambda q: protocol.cron_fire(q, "nightly-digest", 86_400_000, [
        protocol.CronFire(NOW, f"cron:nightly-digest:{NOW}", ENV),
        protocol.CronFire(NOW + 1000, f"cron:nightly-digest:{NOW + 1000}", ENV)]),
    "lookup": lambda q: protocol.lookup(q, "t1", protocol.WAIT_ENTER),
    "cancel": lambda q: protocol.cancel(q, "t3", NOW, 100, 86_400_000, "digest.item:daily", q.unique("ab12")),
    "cancelled": lambda q: protocol.cancelled(q, "t1:1", NOW, ENV, q.unique("ab12")),
    "flush": lambda q: protocol.flush(q, protocol.Flush("digest.item:daily", ["m1", "m2"], "agg1", ENV,
                                                        [("m2", ENV)]), NOW, 5000, 100),
}

SAMPLE_QUEUES = [
    QueueKeys.for_queue(prefix, service, queue)
    for prefix, service in (("alpha", "alpha"), ("beta", "beta"), ("team-b.billing", "billing"), ("x", "email"))
    for queue in ("default", "critical", "low.priority", "q-1")
]



def test_every_builder_is_covered() -> None:
    builders = {
        name
        for name, fn in inspect.getmembers(protocol, inspect.isfunction)
        if fn.__module__.startswith(f"{protocol.__name__}.")
        and inspect.signature(fn).return_annotation in ("Call", protocol.Call)
    }
    assert builders == set(BUILDERS), "add an example call for each new protocol builder to BUILDERS"
    scripts = {BUILDERS[name](SAMPLE_QUEUES[0]).script.name for name in BUILDERS}
    assert scripts == {s.name for s in protocol.ALL_SCRIPTS}, "a script is never called by any builder"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_call_touches_one_slot(name: str) -> None:
    for q in SAMPLE_QUEUES:
        call = BUILDERS[name](q)
        slots = {key_slot(k) for k in call.keys}
        assert slots == {key_slot(q.base)}, f"{name} on {q.base}: keys {call.keys} span slots {slots}"
        assert all(k.startswith(f"{q.prefix}:") for k in call.keys), call.keys
        # KEYS carries every key; no argument looks like one of this queue's keys (it would bypass ACL/cluster).
        assert not [a for a in call.args if isinstance(a, str) and a.startswith(q.base)], call.args


def test_service_keys_share_a_slot_and_prefix() -> None:
    for prefix, service in (("alpha", "alpha"), ("team-b.billing", "billing")):
        s = ServiceKeys.for_service(prefix, service)
        keys = [s.workers, s.worker("host-1-abc"), s.worker("other"), s.schedulers, s.scheduler("host-2-def")]
        assert len({key_slot(k) for k in keys}) == 1
        assert all(k.startswith(f"{prefix}:") for k in keys)


def test_same_named_queues_of_two_services_are_apart() -> None:
    alpha = QueueKeys.for_queue("alpha", "alpha", "default")
    beta = QueueKeys.for_queue("beta", "beta", "default")
    names = ("messages", "pending", "active", "scheduled", "retry", "archived", "completed", "lost", "seq",
             "wake", "paused", "stats")  # fmt: skip
    a_keys = {getattr(alpha, n) for n in names} | {alpha.cron("nightly")}
    b_keys = {getattr(beta, n) for n in names} | {beta.cron("nightly")}
    assert len(a_keys) == len(b_keys) == len(names) + 1
    assert not a_keys & b_keys
    assert key_slot(alpha.pending) != key_slot(beta.pending)
    # Same-named queues spread over the cluster rather than piling into one slot.
    slots = {key_slot(QueueKeys.for_queue(f"svc{i}", f"svc{i}", "default").pending) for i in range(32)}
    assert len(slots) >= 30
    # Even with one shared prefix, the service inside the tag keeps the queues apart.
    same_prefix = [QueueKeys.for_queue("fleet", s, "default").pending for s in ("alpha", "beta")]
    assert same_prefix[0] != same_prefix[1]


def test_no_prefix_reaches_into_another_services_key_space() -> None:
    short = QueueKeys.for_queue("ab", "ab", "default")
    long = QueueKeys.for_queue("abc", "abc", "default")
    assert short.pending.startswith("ab:") and not long.pending.startswith("ab:")


@pytest.mark.parametrize(
    ("kind", "value"),
    [("service", "a{b}"), ("service", "a:b"), ("queue", "de fault"), ("queue", ""), ("prefix", "p{x"),
     ("queue", "q" * 65)],
)
def test_invalid_names_are_refused(kind: str, value: str) -> None:
    args = {"prefix": "p", "service": "s", "queue": "q", kind: value}
    with pytest.raises(ValueError, match=f"invalid {kind}"):
        QueueKeys.for_queue(args["prefix"], args["service"], args["queue"])


@pytest.mark.cluster
def test_every_script_runs_on_the_cluster_without_crossslot(cluster_url: str) -> None:
    url = router_url(cluster_url, is_cluster=True)
    broker = SyncBroker(connect(url))
    replies: dict[str, Any] = {}
    try:
        for q in SAMPLE_QUEUES[:8]:  # two services x four queues, on whichever masters they hash to
            for name in ("enqueue", "dequeue", "extend", "ack", "retry", "archive", "requeue", "maintain", "sweep",
                         "quarantine", "pause", "overview", "unpause", "run", "page", "delete", "delete_batch"):
                replies[name] = broker.run(BUILDERS[name](q))
            for name in ("lookup", "cancel", "cancelled", "flush"):
                replies[name] = broker.run(BUILDERS[name](q))
            replies["cron_fire"] = broker.run(BUILDERS["cron_fire"](q))
            replies["cron_fire again"] = broker.run(BUILDERS["cron_fire"](q))
            # One round trip across slots too (the worker pipelines ack + dequeue of different queues).
            many = broker.run_many([BUILDERS["maintain"](q) for q in SAMPLE_QUEUES])
            assert len(many) == len(SAMPLE_QUEUES)
    finally:
        broker.close()
    assert protocol.parse_enqueue(replies["enqueue"]) == [(1, ""), (1, "")]
    delivered = protocol.parse_dequeue(replies["dequeue"]).deliveries
    assert sorted(d.task_id for d in delivered) == ["t1", "t2"] and [d.token for d in delivered] == [1, 2]
    assert protocol.parse_members(replies["extend"]) == []  # both leases t1:1 and t2:2 were held
    assert protocol.parse_members(replies["ack"]) == []  # both acked
    assert replies["retry"] == 0 and replies["archive"] == 0 and replies["requeue"] == 0  # leases already gone
    assert protocol.parse_maintain(replies["maintain"]).recovered == 0
    assert protocol.parse_sweep(replies["sweep"]).quarantined == 0  # every structure of the queue is consistent
    assert replies["quarantine"] == 0  # nothing was waiting in the quarantine
    assert protocol.parse_lookup(replies["lookup"]).state == "done"  # t1 completed without a retained result
    assert protocol.parse_cancel(replies["cancel"]) == ("unknown", "unknown")
    assert replies["cancelled"] == 0 and replies["flush"] == 0  # no lease held, no such group
    assert replies["pause"] == 1 and replies["unpause"] == 1
    assert protocol.parse_overview(overview_states(SAMPLE_QUEUES[7]), replies["overview"]).paused_since_ms == NOW
    assert protocol.parse_run(replies["run"]) == ["", ""]  # neither task is archived, retrying or scheduled
    assert protocol.parse_page(replies["page"]).total == 0
    assert protocol.parse_delete(replies["delete"]) == (1, ["", "completed"])  # t2 was retained by the ack
    assert protocol.parse_delete(replies["delete_batch"]) == (0, [])
    assert protocol.parse_cron_fire(replies["cron_fire"]) == [protocol.CRON_ENQUEUED] * 2  # claimed and enqueued
    assert protocol.parse_cron_fire(replies["cron_fire again"]) == [protocol.CRON_CLAIMED_ALREADY] * 2


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (redis-py's rule, checked against CLUSTER KEYSLOT in test_local_redis.py)."""
    return _key_slot(key.encode())
