"""Unique tasks: while a unique task holds its lock (``unique_s``), an enqueue of the same type and payload (or the
same ``unique_key``) is refused with DuplicateTask naming the holder; the lock lasts its TTL, or until the task ends
with ``unique_policy: until_finished``. The lock is taken in the enqueue script, so racing producers get one task."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from enginekit import build_registry, fast_settings, qk, raw_client, router_url, task, wait_for

import router
from router.registry.model import UniquePolicy

SERVICES = {"svc": {"queues": {"default": 1, "other": 1}, "tasks": {
    "svc.ttl": task(unique_s=60),
    "svc.short": task(unique_s=0.3),
    "svc.until": task(unique_s=600, unique_policy=UniquePolicy.UNTIL_FINISHED, max_retry=0),
    "svc.plain": task(),
}}}


def _worker(reg: router.Registry, url: str, fail: bool = False) -> router.Worker:
    app = router.Service("svc")

    def handle(t: router.Task) -> None:
        if fail:
            raise router.SkipRetry("no")

    for name in ("svc.ttl", "svc.short", "svc.until", "svc.plain"):
        app.add(name, handle)
    return router.Worker(reg, app, url=url, settings=fast_settings())


def test_a_duplicate_is_refused_naming_the_holder(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        first = c.enqueue("svc.ttl", {"a": 1, "b": [1, 2]})
        with pytest.raises(router.DuplicateTask) as caught:
            c.enqueue("svc.ttl", {"b": [1, 2], "a": 1})  # the same payload, keys in another order
        assert caught.value.existing_id == first.id and first.id in str(caught.value)
        assert "unique_key" in str(caught.value)  # the message names a way out
        c.enqueue("svc.ttl", {"a": 2, "b": [1, 2]})  # another payload is another task
        c.enqueue("svc.plain", {"a": 1})
        c.enqueue("svc.plain", {"a": 1})  # not unique: both go
        by_key = c.enqueue("svc.ttl", {"a": 3}, unique_key="order-7")
        with pytest.raises(router.DuplicateTask) as again:
            c.enqueue("svc.ttl", {"a": 4}, unique_key="order-7")  # the key decides, not the payload
        assert again.value.existing_id == by_key.id
    r = raw_client(redis_url)
    assert r.llen(qk(reg, "svc").pending) == 5
    r.close()


def test_an_enqueue_repeating_the_holders_id_is_an_id_conflict_not_a_duplicate(redis_url: str) -> None:
    """The id check comes first: the caller repeating its own enqueue learns the id exists (TaskIdConflict, which
    the docs tell it to treat as success), not that "another" task holds the lock."""
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("svc.ttl", {"a": 1}, task_id="fixed-1")
        with pytest.raises(router.TaskIdConflict):
            c.enqueue("svc.ttl", {"a": 1}, task_id="fixed-1")


def test_ten_racing_producers_create_one_task(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    barrier = threading.Barrier(10)
    created: list[str] = []
    refused: list[str] = []

    def produce() -> None:
        with router.Client(reg, url=redis_url) as c:
            barrier.wait()
            try:
                created.append(c.enqueue("svc.ttl", {"race": True}).id)
            except router.DuplicateTask as exc:
                refused.append(exc.existing_id)

    threads = [threading.Thread(target=produce) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(created) == 1 and len(refused) == 9
    assert set(refused) == set(created)


def test_a_ttl_lock_expires_and_outlives_the_task(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("svc.ttl", {"n": 1})
        _worker(reg, redis_url).run(burst=True)
        with pytest.raises(router.DuplicateTask):  # ttl policy: completion does not release it
            c.enqueue("svc.ttl", {"n": 1})
        c.enqueue("svc.short", {"n": 1})
        with pytest.raises(router.DuplicateTask):
            c.enqueue("svc.short", {"n": 1})

        def accepted() -> bool:
            try:
                c.enqueue("svc.short", {"n": 1})
            except router.DuplicateTask:
                return False
            return True

        wait_for(accepted, 5, "the 0.3 s lock to expire")


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "archived"])
def test_an_until_finished_lock_is_released_when_the_task_ends(redis_url: str, fail: bool) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("svc.until", {"n": 1})
        with pytest.raises(router.DuplicateTask):
            c.enqueue("svc.until", {"n": 1})
        assert len(r.keys(f"{qk(reg, 'svc').base}:unique:*")) == 1
        _worker(reg, redis_url, fail=fail).run(burst=True)
        assert r.keys(f"{qk(reg, 'svc').base}:unique:*") == []
        c.enqueue("svc.until", {"n": 1})  # free again
    r.close()


def test_cancelling_a_unique_task_releases_its_lock(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        held = c.enqueue("svc.until", {"n": 9})
        assert c.cancel(held).outcome is router.CancelOutcome.CANCELLED
        c.enqueue("svc.until", {"n": 9})


def test_enqueue_many_refuses_the_second_of_two_identical_items(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.DuplicateTask) as caught:
        c.enqueue_many([("svc.ttl", {"k": 1}), ("svc.plain", {}), ("svc.ttl", {"k": 1})])
    enqueued: Any = caught.value.enqueued
    assert [i.type for i in enqueued] == ["svc.ttl", "svc.plain"]  # the others went in; the holder is the first
    assert caught.value.existing_id == enqueued[0].id


def test_a_queue_override_takes_a_lock_of_its_own(redis_url: str) -> None:
    """The lock lives in the queue the task goes to (one cluster slot per queue): a queue override is a separate
    uniqueness domain, as docs/lifecycle.md says."""
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue("svc.ttl", {"q": 1})
        c.enqueue("svc.ttl", {"q": 1}, queue="other")
        with pytest.raises(router.DuplicateTask):
            c.enqueue("svc.ttl", {"q": 1}, queue="other")


@pytest.mark.parametrize(("options", "needle"), [
    ({"unique_key": ""}, "unique_key"),
    ({"unique_key": 5}, "unique_key"),
])
def test_bad_unique_keys_are_refused(redis_url: str, options: dict[str, Any], needle: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption, match=needle):
        c.enqueue("svc.ttl", {}, **options)
    with router.Client(reg, url=redis_url) as c, pytest.raises(router.InvalidOption, match="is not unique"):
        c.enqueue("svc.plain", {}, unique_key="k")


@pytest.mark.cluster
def test_unique_tasks_on_a_cluster(cluster_url: str) -> None:
    url = router_url(cluster_url, is_cluster=True)
    reg = build_registry(url, SERVICES)
    with router.Client(reg, url=url) as c:
        first = c.enqueue("svc.until", {"n": 1})
        with pytest.raises(router.DuplicateTask):
            c.enqueue("svc.until", {"n": 1})
        _worker(reg, url).run(burst=True)
        assert c.get_task(first).state is router.TaskState.COMPLETED
        c.enqueue("svc.until", {"n": 1})


def test_a_deleted_holder_frees_its_until_finished_lock_but_not_a_ttl_one(redis_url: str) -> None:
    """An operator deleting the task that holds an "until finished" lock frees the lock for the next enqueue (the
    lock's holder has no message: the lock is stale); a "ttl" lock means "one per window" and stays."""
    from router.ops.inspector import Inspector  # noqa: PLC0415 - the operator's side of the test

    reg = build_registry(redis_url, SERVICES)
    with router.Client(reg, url=redis_url) as c, Inspector(reg, redis_url) as ins:
        held = c.enqueue("svc.until", {"n": 5})
        ttl = c.enqueue("svc.ttl", {"n": 5})
        assert ins.delete("svc", "default", [held.id, ttl.id]).done == 2
        again = c.enqueue("svc.until", {"n": 5})  # took the stale lock over
        with pytest.raises(router.DuplicateTask) as caught:
            c.enqueue("svc.until", {"n": 5})
        assert caught.value.existing_id == again.id
        with pytest.raises(router.DuplicateTask):
            c.enqueue("svc.ttl", {"n": 5})
