"""The broker's held connection (the hot path of script calls) behaves like redis-py's pool path: it recovers a
flushed script cache and a killed connection, reports refusals per call, and stays correct when threads share it."""

from __future__ import annotations

import threading

import pytest
import redis
from enginekit import build_registry, qk, task

import router
from router.storage import line as line_module
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.connection import Role, connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}

Item = protocol.EnqueueItem


def test_flushed_script_cache_is_reloaded(redis_url: str, redis_client: redis.Redis) -> None:
    registry = build_registry(redis_url, SERVICES)
    with router.Client(registry) as client:
        client.enqueue("svc.job", {"n": 1})
        redis_client.script_flush()  # what a restart or failover does to the cache
        client.enqueue("svc.job", {"n": 2})
    assert redis_client.llen(qk(registry, "svc").pending) == 2


def test_killed_connection_is_replaced_and_the_enqueue_retried(redis_url: str, redis_client: redis.Redis) -> None:
    registry = build_registry(redis_url, SERVICES)
    with router.Client(registry) as client:
        client.enqueue("svc.job", {"n": 1})
        killed = redis_client.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        info = client.enqueue("svc.job", {"n": 2})
    pending = redis_client.lrange(qk(registry, "svc").pending, 0, -1)
    assert len(pending) == 2
    assert info.id.encode() in pending


def test_refusal_names_the_script_and_the_line_stays_usable(redis_url: str, redis_client: redis.Redis) -> None:
    registry = build_registry(redis_url, SERVICES)
    keys = qk(registry, "svc")
    redis_client.set(keys.pending, "not a list")
    broker = SyncBroker(connect(redis_url, Role.PRODUCER))
    try:
        good = build_registry(redis_url, {"other": SERVICES["svc"]})
        ok_call = protocol.enqueue(qk(good, "other"), [Item("t-ok", '{"v":1}')])
        bad_call = protocol.enqueue(keys, [Item("t-bad", '{"v":1}')])
        with pytest.raises(router.BrokerError, match="enqueue"):
            broker.run_many([ok_call, bad_call])
        assert broker.run(protocol.enqueue(qk(good, "other"), [Item("t-next", '{"v":1}')])) == [1, b""]
    finally:
        broker.close()
    assert redis_client.llen(qk(good, "other").pending) == 2


def test_threads_sharing_a_broker_each_get_their_own_replies(redis_url: str, redis_client: redis.Redis) -> None:
    # Each thread enqueues batches of its own size, so a reply read by the wrong thread shows in its length.
    keys = qk(build_registry(redis_url, SERVICES), "svc")
    broker = SyncBroker(connect(redis_url, Role.PRODUCER))
    rounds, threads = 150, 6
    wrong: list[tuple[int, int]] = []

    def produce(slot: int) -> None:
        size = slot + 1
        for i in range(rounds):
            reply = broker.run(protocol.enqueue(keys, [Item(f"t{slot}-{i}-{k}", "{}") for k in range(size)]))
            if len(reply) != 2 * size:  # a (code, detail) pair per item
                wrong.append((size, len(reply) // 2))

    runners = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    try:
        for t in runners:
            t.start()
        for t in runners:
            t.join()
    finally:
        broker.close()
    assert wrong == []
    assert redis_client.llen(keys.pending) == rounds * sum(range(1, threads + 1))


def test_line_reconnects_after_an_interrupt(redis_url: str) -> None:
    keys = qk(build_registry(redis_url, SERVICES), "svc")
    broker = SyncBroker(connect(redis_url, Role.PRODUCER))
    try:
        assert broker.run(protocol.enqueue(keys, [Item("a", "{}")])) == [1, b""]
        assert broker.interrupt()
        assert broker.run(protocol.enqueue(keys, [Item("b", "{}")])) == [1, b""]  # a fresh connection, no error
    finally:
        broker.close()


def test_line_closed_by_the_server_while_idle_is_replaced_before_use(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(line_module, "IDLE_CHECK_S", 0.0)  # check before every use instead of after 1 s idle
    keys = qk(build_registry(redis_url, SERVICES), "svc")
    broker = SyncBroker(connect(redis_url, Role.PRODUCER))
    try:
        assert broker.run(protocol.enqueue(keys, [Item("a", "{}")])) == [1, b""]
        assert redis_client.client_kill_filter(_type="normal", skipme=True) >= 1
        assert broker.run(protocol.enqueue(keys, [Item("b", "{}")])) == [1, b""]  # no "connection closed" on the way
    finally:
        broker.close()
