"""Refusals a failover heals are transient, not fatal: ``NOREPLICAS`` (a master with ``min-replicas-to-write`` and no
good replica: what the recommended Sentinel setting answers during a failover) and ``READONLY`` inside a script (a
demoted master). Found by the Sentinel chaos tests: producers got a BrokerError and every worker died."""

from __future__ import annotations

import threading

import pytest
import redis
import structlog
from enginekit import build_registry, fast_settings, qk, task, wait_for

import router
from router.ops.localredis import RedisServer
from router.storage.connection import TRANSIENT_ERRORS, FailoverRefusal, failover_refusal

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


@pytest.mark.parametrize("message", [
    "NOREPLICAS Not enough good replicas to write.",
    "Error running script (call to f_0e66): @user_script:12: @user_script: 12: -NOREPLICAS Not enough good replicas",
    "Error running script (call to f_a6f7): @user_script:15: @user_script: 15: -READONLY You can't write against a "
    "read only replica.",
])  # fmt: skip
def test_failover_refusals_are_transient(message: str) -> None:
    found = failover_refusal(redis.ResponseError(message))
    assert isinstance(found, FailoverRefusal) and isinstance(found, TRANSIENT_ERRORS)


def test_other_refusals_are_not() -> None:
    for message in ("NOPERM this user has no permissions to run the 'evalsha' command",
                    "ERR Error running script: @user_script:3: attempt to index nil"):
        assert failover_refusal(redis.ResponseError(message)) is None


def test_noreplicas_is_retried_by_producers_and_waited_out_by_workers() -> None:
    with RedisServer(extra_args=["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]) as server:
        reg = build_registry(server.url, SERVICES)
        with router.Client(reg, url=server.url) as client, pytest.raises(router.EnqueueOutcomeUnknown) as err:
            client.enqueue("svc.job", {}, task_id="t-1")  # was: BrokerError "Redis refused script 'enqueue'"
        assert isinstance(err.value.__cause__, FailoverRefusal)
        done = threading.Event()
        app = router.Service("svc")
        app.add("svc.job", lambda t: done.set())
        worker = router.Worker(reg, app, url=server.url, settings=fast_settings())
        died: list[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as exc:  # was: BrokerError (exit 4) from the heartbeat, the waker or an ack
                died.append(exc)

        with structlog.testing.capture_logs() as logs:
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            try:
                wait_for(lambda: any(e["event"] == "redis_unavailable" for e in logs) or died, 15,
                         "the worker to meet the refusals")  # fmt: skip
                assert not died, died
                with server.client() as admin:
                    admin.config_set("min-replicas-to-write", 0)  # a replica is back, as it were
                    with router.Client(reg, url=server.url) as client:
                        client.enqueue("svc.job", {}, task_id="t-1")
                    wait_for(lambda: done.is_set() or died, 15, "the task to run once writes are allowed")
                    assert not died, died
                    wait_for(lambda: admin.zcard(qk(reg, "svc").active) == 0, 10, "its ack")
            finally:
                worker.stop()
                thread.join(15)
        assert not died and thread.is_alive() is False
