"""The operator's and the viewer's ACL lists in docs/operations.md are exactly enough: an operator runs every
Inspector query and action with a user created from its line; a viewer runs every query and is refused every
action with a BrokerError naming the fix."""

from __future__ import annotations

import pytest
from enginekit import build_registry, qk, task
from test_acl_lists import _acl_rules, _create

import router
from router.errors import BrokerError
from router.ops.inspector import Inspector
from router.ops.localredis import RedisServer
from router.storage import protocol

SERVICES = {"email": {"prefix": "email", "queues": {"default": 1}, "tasks": {"email.x": task()}}}


def _fill(server: RedisServer) -> router.Registry:
    admin_url = f"redis://127.0.0.1:{server.port}/0"
    reg = build_registry(admin_url, SERVICES)
    q = qk(reg, "email")
    with router.Client(reg, url=admin_url) as c:
        c.enqueue_many([("email.x", {"n": n}) for n in range(30)])
        c.enqueue("email.x", {"n": 99}, task_id="later", process_in=600)
    with server.client() as admin:
        for n in range(5):
            admin.hset(q.messages, f"dead{n}", '{"v":1,"t":"email.x","e":1,"p":{},"n":3,"why":"skip_retry"}')
            admin.zadd(q.archived, {f"dead{n}": n})
    return reg


def _queries(ins: Inspector) -> None:
    assert ins.queue("email", "default").sizes["pending"] == 30
    assert len(ins.history("email", "default", minutes=120)) == 120
    page = ins.tasks("email", "default", "pending", limit=10)
    assert len(ins.tasks("email", "default", "pending", limit=10, cursor=page.next_cursor).tasks) == 10
    assert len(ins.tasks("email", "default", "archived").tasks) == 5
    assert ins.tasks("email", "default", "active").tasks == []
    assert ins.live_workers() == []


def test_the_operator_list_runs_every_query_and_action(fresh_redis_server: RedisServer) -> None:
    _fill(fresh_redis_server)
    url = _create(fresh_redis_server, "email-operator", _acl_rules("email-operator"))
    with Inspector(build_registry(url, SERVICES), url) as ins:
        _queries(ins)
        assert ins.pause("email", "default").done == 1 and ins.unpause("email", "default").done == 1
        assert ins.run("email", "default", ["dead0", "later"]).done == 2
        assert ins.run_all("email", "default", "archived", batch=2).done == 4
        with router.Client(build_registry(url, SERVICES), url=url) as client:  # a waiter: delete must publish
            client._broker.run(protocol.lookup(qk(ins.registry, "email"), "dead0", protocol.WAIT_ENTER))
        assert ins.delete("email", "default", ["dead0"]).done == 1
        assert ins.task("later").state is router.TaskState.PENDING  # run made it pending
        first = ins.tasks("email", "default", "pending", limit=1).tasks[0].id
        assert ins.cancel(first).outcome is router.CancelOutcome.CANCELLED
        assert ins.delete_all("email", "default", "pending", batch=7).done == 34  # one was cancelled
        assert ins.queue("email", "default").sizes["pending"] == 0


@pytest.mark.parametrize("action", ["pause", "run", "delete", "delete_all", "cancel"])
def test_the_viewer_list_runs_every_query_and_no_action(fresh_redis_server: RedisServer, action: str) -> None:
    _fill(fresh_redis_server)
    url = _create(fresh_redis_server, "email-viewer", _acl_rules("email-viewer"))
    with Inspector(build_registry(url, SERVICES), url) as ins:
        _queries(ins)
        assert ins.task("dead0").state is router.TaskState.ARCHIVED
        calls = {
            "pause": lambda: ins.pause("email", "default"),
            "run": lambda: ins.run("email", "default", ["dead0"]),
            "delete": lambda: ins.delete("email", "default", ["later"]),
            "delete_all": lambda: ins.delete_all("email", "default", "archived"),
            "cancel": lambda: ins.cancel("later"),
        }
        with pytest.raises(BrokerError, match="grant the service's ACL user"):
            calls[action]()
        assert ins.queue("email", "default").sizes["archived"] == 5  # nothing changed
