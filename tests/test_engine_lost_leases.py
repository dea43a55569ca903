"""Lost leases count as attempts, but only a task that keeps losing them (it kills its workers) is archived."""

from __future__ import annotations

from enginekit import archived, build_registry, fast_settings, qk, raw_client, task

import router

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
