"""The live guard reads a service's heartbeats at most once per ``live_guard_ttl_s``, so the enqueue hot path stays
one round trip; what it read stays its answer until the TTL passes (counted with INFO commandstats)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from enginekit import build_registry, sk, task, wait_for

import router
from router.storage.broker import SyncBroker
from router.storage.connection import connect

SERVICES = {
    "email": {"queues": {"default": 1}, "tasks": {"email.welcome": task(), "email.receipt": task()}},
    "billing": {"queues": {"default": 1}, "tasks": {"billing.charge": task()}},
}


def heartbeat_reads(r: Any) -> int:
    """ZRANGEBYSCORE calls so far: the live guard's read of a service's worker index (no worker runs here, and
    no script is called that would issue one)."""
    return int(r.info("commandstats").get("cmdstat_zrangebyscore", {}).get("calls", 0))


def publish(redis_url: str, registry: router.Registry, service: str, worker_id: str, handlers: list[str]) -> None:
    """A heartbeat as a worker publishes it, without running a worker."""
    broker = SyncBroker(connect(redis_url))
    doc = json.dumps({"id": worker_id, "service": service, "handlers": handlers})
    broker.heartbeat(sk(registry, service), worker_id, doc, int(time.time() * 1000), 60_000, prune=False)
    broker.close()


def withdraw(redis_url: str, registry: router.Registry, service: str, worker_id: str) -> None:
    broker = SyncBroker(connect(redis_url))
    broker.remove_worker(sk(registry, service), worker_id)
    broker.close()


@pytest.fixture
def registry(redis_url: str) -> router.Registry:
    reg = build_registry(redis_url, SERVICES)
    publish(redis_url, reg, "email", "e1", ["email.welcome", "email.receipt"])
    publish(redis_url, reg, "billing", "b1", ["billing.charge"])
    return reg


def test_heartbeats_are_read_once_per_service_within_the_ttl(
    registry: router.Registry, redis_url: str, redis_client: Any
) -> None:
    with router.Client(registry, url=redis_url, live_guard=True, live_guard_ttl_s=3600) as client:
        before = heartbeat_reads(redis_client)
        for i in range(20):
            client.enqueue("email.welcome", {"i": i})
        assert heartbeat_reads(redis_client) - before == 1
        client.enqueue("email.receipt", {})  # same service: still cached
        client.enqueue_many([("billing.charge", {}), ("email.welcome", {}), ("billing.charge", {})])
        assert heartbeat_reads(redis_client) - before == 2, "one more read, for billing only"
        # Within the TTL the cached answer stands, even after the worker left.
        withdraw(redis_url, registry, "email", "e1")
        client.enqueue("email.welcome", {})
        assert heartbeat_reads(redis_client) - before == 2
    # A new client reads again and sees no email worker.
    with router.Client(registry, url=redis_url, live_guard=True, live_guard_ttl_s=3600) as fresh, \
            pytest.raises(router.NoLiveWorker):
        fresh.enqueue("email.welcome", {})


def test_heartbeats_are_read_again_once_the_ttl_passed(
    registry: router.Registry, redis_url: str, redis_client: Any
) -> None:
    ttl_s = 0.5
    with router.Client(registry, url=redis_url, live_guard=True, live_guard_ttl_s=ttl_s) as client:
        before = heartbeat_reads(redis_client)
        client.enqueue("email.welcome", {})
        read_at = time.monotonic()
        withdraw(redis_url, registry, "email", "e1")

        def refused() -> bool:
            try:
                client.enqueue("email.welcome", {})
            except router.NoLiveWorker:
                return True
            return False

        wait_for(refused, 10, "the live guard to read the heartbeats again and refuse")
        assert time.monotonic() - read_at >= ttl_s, "the cache was dropped before its TTL"
        assert heartbeat_reads(redis_client) - before == 2


def test_async_client_caches_the_same_way(registry: router.Registry, redis_url: str, redis_client: Any) -> None:
    async def produce() -> int:
        async with router.AsyncClient(registry, url=redis_url, live_guard=True, live_guard_ttl_s=3600) as client:
            before = heartbeat_reads(redis_client)
            for i in range(10):
                await client.enqueue("billing.charge", {"i": i})
            await client.enqueue_many([("email.welcome", {}), ("billing.charge", {})])
            return heartbeat_reads(redis_client) - before

    assert asyncio.run(produce()) == 2
