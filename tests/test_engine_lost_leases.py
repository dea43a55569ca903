"""Lost leases count as attempts, but only a task that keeps losing them (it kills its workers) is archived."""

from __future__ import annotations

from enginekit import archived, build_registry, fast_settings, qk, raw_client, task

import router
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.worker.leases import SOLO_FROM_LOST_LEASES

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task(max_retry=0)}}}


def test_lost_leases_get_their_own_cap(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as client:
        survivor = client.enqueue("svc.job", {"n": 1}).id
        poison = client.enqueue("svc.job", {"n": 2}).id
    # As if earlier deliveries were lost: two for one task (maybe never started), four for the other.
    r.hset(q.lost, survivor, 2)
    r.hset(q.lost, poison, 4)
    attempts: dict[str, int] = {}
    app = router.Service("svc")
    app.add("svc.job", lambda t: attempts.__setitem__(t.id, t.attempt))
    router.Worker(reg, app, url=redis_url, settings=fast_settings()).run(burst=True)
    assert attempts == {survivor: 3}  # max_retry 0, yet it runs: two lost leases are not two failures
    dead = archived(r, q)
    assert set(dead) == {poison} and dead[poison]["why"] == "lease_expired"
    assert r.hlen(q.lost) == 0
    r.close()


def test_a_task_that_lost_its_lease_twice_is_leased_alone(redis_url: str) -> None:
    """It may be what kills its workers (found by the poison chaos test: the tasks recovered with it were fetched
    with it again and again, until they were archived with it as lease_expired)."""
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as client:
        a, b, c, d, e = (client.enqueue("svc.job", {"n": n}).id for n in range(5))
    r.hset(q.lost, b, 1)  # once is the common case (its worker was killed): nothing changes
    r.hset(q.lost, c, SOLO_FROM_LOST_LEASES)
    broker = SyncBroker(r)

    def batch() -> list[str]:
        reply = broker.run(protocol.dequeue(q, 30_000, 10, SOLO_FROM_LOST_LEASES))
        return [x.task_id for x in protocol.parse_dequeue(reply).deliveries]

    assert batch() == [a, b]  # the batch ends before c; c is back at the front
    assert batch() == [c]
    assert batch() == [d, e]
    r.close()


def test_a_worker_holding_such_a_task_leases_nothing_else_until_it_settles(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    q = qk(reg, "svc")
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as client:
        suspect = client.enqueue("svc.job", {"n": 0}).id
        others = {client.enqueue("svc.job", {"n": n}).id for n in range(1, 6)}
    r.hset(q.lost, suspect, SOLO_FROM_LOST_LEASES)
    leased_meanwhile: list[int] = []
    done: list[str] = []
    app = router.Service("svc")

    def handle(t: router.Task) -> None:
        if t.id == suspect:
            leased_meanwhile.append(int(r.zcard(q.active)))
        done.append(t.id)

    app.add("svc.job", handle)
    router.Worker(reg, app, url=redis_url, settings=fast_settings(concurrency=4)).run(burst=True)
    assert leased_meanwhile == [1] and set(done) == others | {suspect} and done[0] == suspect
    r.close()
