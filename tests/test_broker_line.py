"""The broker's held connection (the hot path of script calls) behaves like redis-py's pool path: it recovers a
flushed script cache and a killed connection, reports refusals per call, and stays correct when threads share it."""

from __future__ import annotations

import threading

import pytest
import redis
from enginekit import build_registry, qk, task

import router
from router import protocol
from router.broker import SyncBroker
from router.connection import Role, connect

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


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
        ok_call = protocol.enqueue(qk(good, "other"), [("t-ok", '{"v":1}')])
        bad_call = protocol.enqueue(keys, [("t-bad", '{"v":1}')])
        with pytest.raises(router.BrokerError, match="enqueue"):
            broker.run_many([ok_call, bad_call])
        assert broker.run(protocol.enqueue(qk(good, "other"), [("t-next", '{"v":1}')])) == [1]
    finally:
        broker.close()
    assert redis_client.llen(qk(good, "other").pending) == 2


def test_threads_sharing_a_client_each_get_their_own_replies(redis_url: str, redis_client: redis.Redis) -> None:
    registry = build_registry(redis_url, SERVICES)
    per_thread, threads = 300, 6
    infos: list[list[router.TaskInfo]] = [[] for _ in range(threads)]
    with router.Client(registry) as client:

        def produce(slot: int) -> None:
            for i in range(per_thread):
                infos[slot].append(client.enqueue("svc.job", {"t": slot, "i": i}))

        runners = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
        for t in runners:
            t.start()
        for t in runners:
            t.join()
    ids = [info.id for batch in infos for info in batch]
    assert len(ids) == len(set(ids)) == per_thread * threads
    stored = redis_client.lrange(qk(registry, "svc").pending, 0, -1)
    assert sorted(x.decode() for x in stored) == sorted(ids)
