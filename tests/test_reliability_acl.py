"""What Redis refuses (ACL) ends cleanly: typed errors naming the fix, exit code 4, no traceback (issue 9, item 6);
and a round trip in which one call is refused settles the others on their own replies (issue 9, item 9)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from enginekit import (
    CHAOS_SERVICES,
    PLACEHOLDER_URL,
    build_registry,
    chaos_env,
    fast_settings,
    qk,
    start_worker,
    task,
    wait_for,
    workers,
    write_registry_yaml,
)

import router
from router.ops.localredis import RedisServer


def _user(server: RedisServer, name: str, *rules: str) -> str:
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", *rules)
    return f"redis://{name}:pw@127.0.0.1:{server.port}/0"


def test_a_worker_whose_commands_are_refused_exits_4_without_a_traceback(
    fresh_redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """It used to exit 1 with a traceback: the shutdown's heartbeat removal raised NoPermissionError."""
    url = _user(fresh_redis_server, "other", "~other:*", "+@all")  # its keys are another service's
    path = write_registry_yaml(tmp_path / "services.yaml", CHAOS_SERVICES, PLACEHOLDER_URL)
    with workers() as procs:
        for extra in ((), ("--burst",)):
            w = start_worker(path, "chaos", url, extra_env=chaos_env(redis_url, "acl"), extra_args=extra)
            procs.append(w)
            assert w.wait(30) == 4, w.log_tail()
            tail = w.log_tail(100)
            assert "Traceback" not in tail and "no permissions" in tail and "ACL user" in tail, tail


def test_a_producer_without_ping_gets_a_broker_error_naming_it(fresh_redis_server: RedisServer) -> None:
    """redis-py's health check PINGs an idle connection; without +ping that was a raw NoPermissionError."""
    url = _user(fresh_redis_server, "producer", "~*", "+@all", "-ping")
    reg = build_registry(url, {"svc": {"tasks": {"svc.x": task()}}})
    client = redis.Redis.from_url(url, health_check_interval=1)
    with router.Client(reg, redis=client) as producer:
        producer.enqueue("svc.x", {})
        time.sleep(1.2)  # let the connection go idle past the health-check interval (not waiting for work)
        with pytest.raises(router.BrokerError, match="ping"):
            producer.enqueue("svc.x", {})


def test_a_refused_ack_does_not_strand_what_the_same_round_trip_leased(fresh_redis_server: RedisServer) -> None:
    """The worker pipelines queue b's ack with queue a's dequeue. When only the ack is refused, the tasks the
    dequeue leased used to stay in active until their lease expired; now they start (or go straight back)."""
    admin_url = fresh_redis_server.url
    services = {"svc": {"queues": {"a": 9, "b": 1}, "priority": "strict",
                        "tasks": {"svc.a": task("a"), "svc.b": task("b")}}}
    reg = build_registry(admin_url, services)
    qa, qb = qk(reg, "svc", "a"), qk(reg, "svc", "b")
    url = _user(fresh_redis_server, "worker", "~svc:*", "+@all")
    gate, ran = threading.Event(), []
    app = router.Service("svc")
    app.add("svc.b", lambda t: gate.wait(10))
    app.add("svc.a", lambda t: ran.append(t.id))
    with router.Client(reg, url=admin_url) as c:
        c.enqueue("svc.b", {})
    worker = router.Worker(reg, app, url=url, settings=fast_settings(concurrency=4, lease_s=30))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    admin = fresh_redis_server.client()
    try:
        wait_for(lambda: admin.zcard(qb.active) == 1, 10, "b's task to run")
        # From now on the worker may not touch queue b's keys: its next ack of b is refused (NOPERM).
        admin.execute_command("ACL", "SETUSER", "worker", "resetkeys", f"~{qa.base}:*", "~svc:{svc}:*")
        with router.Client(reg, url=admin_url) as c:
            a_ids = {i.id for i in c.enqueue_many([("svc.a", {"i": i}) for i in range(3)])}
        gate.set()
        thread.join(30)
    finally:
        gate.set()
        thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], router.BrokerError) and "no permissions" in str(errors[0])
    left: Any = {x.decode() for x in admin.lrange(qa.pending, 0, -1)} | set(ran)
    assert admin.zcard(qa.active) == 0, "a's tasks must not wait in active for their lease to expire"
    assert left == a_ids
    admin.close()
