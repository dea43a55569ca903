"""The optional live guard: an enqueue is refused while no live worker of the owner handles its type."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from enginekit import build_registry, dbsize, fast_settings, raw_client, sk, task, wait_for

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.a": task(), "svc.b": task()}}}


@pytest.fixture
def registry(redis_url: str) -> router.Registry:
    return build_registry(redis_url, SERVICES)


@pytest.fixture
def worker_with_only_a(registry: router.Registry, redis_url: str) -> Iterator[router.Worker]:
    app = router.Service("svc")
    app.add("svc.a", lambda t: None)  # no handler for svc.b: started with the override, as a stale deploy would be
    worker = router.Worker(registry, app, url=redis_url, settings=fast_settings(), allow_handler_mismatch=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    r = raw_client(redis_url)
    wait_for(lambda: r.zcard(sk(registry, "svc").workers) == 1, 10, "the worker's heartbeat")
    r.close()
    yield worker
    worker.stop()
    thread.join(timeout=10)


def test_refused_without_a_live_worker_and_nothing_written(registry: router.Registry, redis_url: str) -> None:
    r = raw_client(redis_url)
    before = dbsize(r)
    with router.Client(registry, url=redis_url, live_guard=True) as client, pytest.raises(router.NoLiveWorker) as err:
        client.enqueue("svc.a", {})
    assert (err.value.service, err.value.live_workers) == ("svc", 0)
    assert "router worker --service svc" in str(err.value)
    assert dbsize(r) == before
    with router.Client(registry, url=redis_url) as client:  # off by default: enqueueing ahead of workers is fine
        client.enqueue("svc.a", {})
    r.close()


def test_accepted_for_a_live_handler_refused_for_a_missing_one(
    registry: router.Registry, redis_url: str, worker_with_only_a: router.Worker
) -> None:
    with router.Client(registry, url=redis_url, live_guard=True) as client:
        assert client.enqueue("svc.a", {}).service == "svc"
        with pytest.raises(router.NoLiveWorker) as err:
            client.enqueue("svc.b", {})
        assert err.value.live_workers == 1


def test_async_client_has_the_same_live_guard(registry: router.Registry, redis_url: str) -> None:
    async def main() -> None:
        async with router.AsyncClient(registry, url=redis_url, live_guard=True) as client:
            with pytest.raises(router.NoLiveWorker):
                await client.enqueue("svc.a", {})

    asyncio.run(main())
