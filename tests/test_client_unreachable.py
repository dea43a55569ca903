"""An unreachable Redis: enqueue reports an unknown outcome carrying every task id, so the caller can repeat it."""

from __future__ import annotations

import socket

import pytest
from enginekit import build_registry, task

import router

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}}}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


def test_single_and_bulk_enqueue_report_every_id_when_redis_is_unreachable() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    registry = build_registry(url, SERVICES)
    with router.Client(registry, url=url) as client:
        with pytest.raises(router.EnqueueOutcomeUnknown) as one:
            client.enqueue("svc.job", {}, task_id="mine-1")
        assert one.value.task_ids == ("mine-1",) and "task_id='mine-1'" in str(one.value)
        with pytest.raises(router.EnqueueOutcomeUnknown) as many:
            client.enqueue_many([("svc.job", {"n": i}) for i in range(3)])
    assert len(set(many.value.task_ids)) == 3
    assert many.value.task_id == many.value.task_ids[0]
    assert "Repeat the batch of 3" in str(many.value)


def test_an_unreachable_cluster_is_a_broker_error_that_names_the_url() -> None:
    url = f"redis+cluster://127.0.0.1:{_closed_port()}"
    registry = build_registry(url, SERVICES)
    with pytest.raises(router.BrokerError, match="cannot reach Redis Cluster"):
        router.Client(registry, url=url)


def test_live_guard_read_failure_is_a_broker_error_and_nothing_is_sent() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    registry = build_registry(url, SERVICES)
    with router.Client(registry, url=url, live_guard=True) as client, pytest.raises(router.BrokerError) as err:
        client.enqueue("svc.job", {})
    assert "nothing was enqueued" in str(err.value)
