"""The dead letter is bounded by age (``--archive-max-age-s`` / ``WorkerSettings.archive_max_age_s``): entries older
than it are dropped, their messages with them, when the worker archives the next task."""

from __future__ import annotations

from enginekit import FakeClock, build_registry, fast_settings, qk, raw_client, task

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def test_dead_letters_older_than_the_max_age_are_dropped(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    q = qk(reg, "svc")
    clock = FakeClock()
    app = router.Service("svc")

    def reject(t: router.Task) -> None:
        raise router.SkipRetry("rejected")

    app.add("svc.job", reject)

    def archive_one(task_id: str) -> None:
        with router.Client(reg, url=redis_url, clock=clock) as c:
            c.enqueue("svc.job", {}, task_id=task_id)
        w = router.Worker(reg, app, url=redis_url, clock=clock, settings=fast_settings(archive_max_age_s=100.0))
        w.run(burst=True)
        assert w.stats["archived"] == 1

    archive_one("old")
    clock.advance(60)
    archive_one("middle")
    assert [x.decode() for x in r.zrange(q.archived, 0, -1)] == ["old", "middle"]  # 60 s < 100 s: both kept
    clock.advance(50)  # "old" is now 110 s old, "middle" 50 s
    archive_one("new")
    assert [x.decode() for x in r.zrange(q.archived, 0, -1)] == ["middle", "new"]
    assert sorted(x.decode() for x in r.hkeys(q.messages)) == ["middle", "new"], "the dropped message went too"
    r.close()
