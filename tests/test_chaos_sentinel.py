"""Sentinel: router finds the master through `redis+sentinel://` URLs, and keeps working across a failover."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from enginekit import build_registry, fast_settings, task, wait_for

import router
from router.testing import RedisSentinelServer

pytestmark = [pytest.mark.chaos, pytest.mark.sentinel]

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


@pytest.fixture
def trio() -> Iterator[RedisSentinelServer]:
    # Its own trio: a failover swaps the roles of master and replica for good.
    with RedisSentinelServer() as servers:
        yield servers


def _enqueue(client: router.Client, n: int) -> None:
    task_id = f"job-{n}"
    for _ in range(20):
        try:
            client.enqueue("svc.job", {"n": n}, task_id=task_id)
            return
        except router.EnqueueOutcomeUnknown:
            continue  # repeat with the same id: it either lands once or reports a conflict
        except router.TaskIdConflict:
            return  # an earlier attempt whose outcome was unknown had landed
    raise AssertionError(f"could not enqueue {task_id} across the failover")


def _failover(sentinel: redis.Redis, master: str) -> bool:
    # Sentinel refuses (NOGOODSLAVE) until it has the replica's own INFO, a few seconds after start.
    try:
        sentinel.execute_command("SENTINEL", "FAILOVER", master)
    except redis.ResponseError as exc:
        if "NOGOODSLAVE" in str(exc):
            return False
        raise
    return True


def test_worker_and_client_follow_a_sentinel_failover(trio: RedisSentinelServer) -> None:
    host, port = trio.sentinel_address
    url = f"redis+sentinel://{host}:{port}/{trio.master_name}"
    reg = build_registry(url, SERVICES)
    done: set[int] = set()
    lock = threading.Lock()

    def handle(t: router.Task) -> None:
        with lock:
            done.add(int(t.payload["n"]))

    app = router.Service("svc")
    app.add("svc.job", handle)
    worker = router.Worker(reg, app, url=url, settings=fast_settings())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with router.Client(reg, url=url) as client:
            for n in range(20):
                _enqueue(client, n)
            wait_for(lambda: len(done) == 20, 20, "the first 20 tasks through the original master")

            sentinel = redis.Redis(host=host, port=port, decode_responses=True)
            assert trio.replica is not None
            wait_for(lambda: _failover(sentinel, trio.master_name), 30, "Sentinel to accept the failover")
            wait_for(
                lambda: int(sentinel.sentinel_get_master_addr_by_name(trio.master_name)[1]) == trio.replica.port,
                30, "Sentinel to promote the replica",
            )
            sentinel.close()

            for n in range(20, 40):
                _enqueue(client, n)
            wait_for(lambda: len(done) == 40, 30, "the next 20 tasks through the promoted master")
        assert done == set(range(40))
        assert thread.is_alive(), "the worker must ride out the failover, not exit"
    finally:
        worker.stop()
        thread.join(timeout=15)
