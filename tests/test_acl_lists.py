"""The ACL command lists docs/operations.md gives are exactly enough: a worker and a producer run a whole
lifecycle (enqueue, live guard, wake-ups, retries, archive, integrity sweep, heartbeats, shutdown) with users
created from those lines, and a user missing one of the commands is refused with a BrokerError."""

from __future__ import annotations

import re
import shlex
import threading
from pathlib import Path

import pytest
from enginekit import REPO, build_registry, fast_settings, qk, task, wait_for

import router
from router.ops.localredis import RedisServer
from router.registry.model import AggregateSpec

DOC = REPO / "docs" / "operations.md"


def _acl_rules(user: str) -> list[str]:
    """The ``ACL SETUSER <user> ...`` arguments of the doc's sh block for ``user``."""
    for line in DOC.read_text().splitlines():
        if re.search(rf"ACL SETUSER {re.escape(user)}\b", line):
            args = shlex.split(line)
            return args[args.index("SETUSER") + 2:]
    raise AssertionError(f"docs/operations.md has no ACL SETUSER line for {user}")


def _create(server: RedisServer, user: str, rules: list[str]) -> str:
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", user, *rules)
    return f"redis://{user}:change-me@127.0.0.1:{server.port}/0"


SERVICES = {"email": {"prefix": "email", "tasks": {"email.x": task(max_retry=1)}}}


def test_the_documented_lists_run_a_whole_lifecycle(fresh_redis_server: RedisServer, tmp_path: Path) -> None:
    # The live guard's two commands on top, as the doc says.
    producer_url = _create(fresh_redis_server, "email-producer", [*_acl_rules("email-producer"), "+zrangebyscore",
                                                                  "+mget"])
    worker_url = _create(fresh_redis_server, "email-worker", _acl_rules("email-worker"))
    reg = build_registry(worker_url, SERVICES)
    q = qk(reg, "email")
    outcomes: list[str] = []
    app = router.Service("email")

    def handle(t: router.Task) -> None:
        outcomes.append(t.payload["kind"])
        if t.payload["kind"] == "fail":
            raise RuntimeError("planned")

    app.add("email.x", handle)
    worker = router.Worker(reg, app, url=worker_url, settings=fast_settings(heartbeat_s=0.2))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        with router.Client(reg, url=producer_url, live_guard=True) as client:
            wait_for(lambda: _accepted(client), 10, "the live guard to see the worker")
            client.enqueue_many([("email.x", {"kind": "ok"}), ("email.x", {"kind": "fail"})])
        wait_for(lambda: outcomes.count("fail") == 2 and "ok" in outcomes, 30, f"the tasks to run\n{errors}")
    finally:
        worker.stop()
        thread.join(30)
    assert not errors
    # A burst worker runs the maintenance and a full integrity pass with the same user.
    router.Worker(reg, app, url=worker_url, settings=fast_settings()).run(burst=True)
    with fresh_redis_server.client() as admin:
        assert admin.zcard(q.archived) == 1 and admin.hget(q.stats, "processed") == b"2"


def _accepted(client: router.Client) -> bool:
    try:
        client.enqueue("email.x", {"kind": "ok"})
    except router.NoLiveWorker:
        return False
    return True


@pytest.mark.parametrize(("missing", "burst"), [("+lpos", True), ("+hscan", True), ("+time", True),
                                                ("+blpop", False)])
def test_a_worker_missing_a_documented_command_is_refused_with_a_broker_error(
    fresh_redis_server: RedisServer, missing: str, burst: bool
) -> None:
    rules = [r for r in _acl_rules("email-worker") if r != missing]
    url = _create(fresh_redis_server, "short", rules)
    reg = build_registry(url, SERVICES)
    app = router.Service("email")
    app.add("email.x", lambda t: None)
    with fresh_redis_server.client() as admin:  # an orphaned message: the integrity pass searches pending for it
        admin.hset(qk(reg, "email").messages, "orphan", b"{}")
    worker = router.Worker(reg, app, url=url, settings=fast_settings())
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            worker.run(burst=burst)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    runner.join(30)
    if runner.is_alive():
        worker.stop()
        runner.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], router.BrokerError), outcome
    assert "ACL user" in str(outcome[0])


LIFECYCLE = {"email": {"prefix": "email", "tasks": {
    "email.x": task(retention_s=60),
    "email.once": task(unique_s=60, unique_policy=router.UniquePolicy.UNTIL_FINISHED),
    "email.line": task(aggregate=AggregateSpec("email.lines", grace_s=0.05, max_delay_s=1, max_size=2)),
    "email.lines": task(),
}}}


def test_the_documented_lists_cover_unique_groups_cancel_and_wait(fresh_redis_server: RedisServer) -> None:
    producer_url = _create(fresh_redis_server, "email-producer", _acl_rules("email-producer"))
    client_url = _create(fresh_redis_server, "email-client", _acl_rules("email-client"))
    worker_url = _create(fresh_redis_server, "email-worker", _acl_rules("email-worker"))
    reg = build_registry(worker_url, LIFECYCLE)
    app = router.Service("email")
    app.add("email.x", lambda t: "done")
    app.add("email.once", lambda t: None)
    app.add("email.lines", lambda t: len(t.payload["items"]))
    with router.Client(reg, url=producer_url) as producer:
        producer.enqueue("email.once", {"k": 1})
        with pytest.raises(router.DuplicateTask):
            producer.enqueue("email.once", {"k": 1})
        producer.enqueue_many([("email.line", {"n": 1}, {"group": "g"}), ("email.line", {"n": 2}, {"group": "g"})])
        later = producer.enqueue("email.x", {}, process_in=600)
        waited = producer.enqueue("email.x", {})
    worker = router.Worker(reg, app, url=worker_url, settings=fast_settings())
    thread = threading.Thread(target=worker.run)
    with router.Client(reg, url=client_url) as client:
        assert client.cancel(later).outcome is router.CancelOutcome.CANCELLED
        thread.start()
        try:
            assert client.wait(waited, timeout_s=20).result == "done"
            wait_for(lambda: worker.stats["processed"] == 3, 20, "the unique task and the aggregate to run")
        finally:
            worker.stop()
            thread.join(30)
    assert worker.stats["processed"] == 3 and worker.stats["stale"] == 0
