"""Prometheus metrics: a worker's per-task-type counters, durations and in-flight gauge after a known workload
(in-process, and a ``--processes 2`` group with one endpoint that survives a child's crash), the exporter's queue
gauges, every name checked by ``promtool check metrics`` on a real scrape, and every name documented."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import env_without_pythonpath, spawn_router
from enginekit import (
    REPO,
    WorkerProcess,
    build_registry,
    fast_settings,
    qk,
    raw_client,
    task,
    wait_for,
    write_registry_yaml,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from schedkit import start_scheduler, write_cron_yaml

import router
from router.storage.envelope import encode_new
from router.worker.metrics import WorkerMetrics, group_registry

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DOC = REPO / "docs" / "metrics.md"


def samples(text: str) -> Samples:
    """Every sample of an exposition as (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str) -> None:
    """``promtool check metrics`` on a scrape: Prometheus's own linter of names, units and help texts."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it where it can)")
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, f"promtool check metrics:\n{done.stdout}{done.stderr}"


def scrape(port: int, server: WorkerProcess | None = None) -> str:
    """One scrape; a failed one names the server's last log lines (its traceback, if any)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return str(reply.read().decode())
    except urllib.error.URLError as exc:
        tail = server.log_tail() if server is not None else ""
        raise AssertionError(f"scrape of port {port} failed: {exc}\n{tail}") from exc


def families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


SERVICES: dict[str, Any] = {
    "shop": {
        "queues": {"default": 1, "critical": 3},
        "tasks": {"shop.order": task("default", max_retry=0), "shop.flaky": task("default", max_retry=5),
                  "shop.alert": task("critical")},
    },
}


def test_worker_metrics_per_task_type_after_a_known_workload(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    app = router.Service("shop")

    def order(t: router.Task) -> None:
        if t.payload.get("skip"):
            raise router.SkipRetry("bad input")
        if t.payload.get("fail"):
            raise RuntimeError("planned")

    app.add("shop.order", order)
    app.add("shop.flaky", lambda t: 1 / 0)
    app.add("shop.alert", lambda t: None)
    with router.Client(reg, url=redis_url) as c:
        c.enqueue_many([("shop.order", {"n": n}) for n in range(5)])
        c.enqueue_many([("shop.order", {"fail": True}), ("shop.order", {"fail": True}), ("shop.order", {"skip": 1})])
        c.enqueue("shop.flaky", {})
        c.enqueue_many([("shop.alert", {}) for _ in range(3)])
    r = raw_client(redis_url)
    r.hset(qk(reg, "shop").messages, "stray", encode_new("other.type", "{}", 1))  # a type nobody declares
    r.lpush(qk(reg, "shop").pending, "stray")
    registry = CollectorRegistry()
    metrics = WorkerMetrics("shop", registry)
    router.Worker(reg, app, url=redis_url, settings=fast_settings(), metrics=metrics).run(burst=True)
    text = generate_latest(registry).decode()
    found = samples(text)
    order_labels = {"service": "shop", "queue": "default", "task_type": "shop.order"}
    assert value(found, "router_tasks_processed_total", **order_labels) == 5
    assert value(found, "router_tasks_failed_total", **order_labels) == 3
    assert value(found, "router_tasks_archived_total", **order_labels, reason="max_retry_exceeded") == 2
    assert value(found, "router_tasks_archived_total", **order_labels, reason="skip_retry") == 1
    assert value(found, "router_tasks_retried_total", **order_labels) == 0
    flaky = {"service": "shop", "queue": "default", "task_type": "shop.flaky"}
    assert (value(found, "router_tasks_retried_total", **flaky), value(found, "router_tasks_failed_total", **flaky)) \
        == (1, 1)
    alert = {"service": "shop", "queue": "critical", "task_type": "shop.alert"}
    assert value(found, "router_tasks_processed_total", **alert) == 3
    assert value(found, "router_task_duration_seconds_count", **order_labels) == 8
    assert value(found, "router_task_duration_seconds_bucket", **order_labels, le="+Inf") == 8
    assert value(found, "router_task_duration_seconds_count", **alert) == 3
    assert value(found, "router_tasks_in_flight", **order_labels) == 0
    unknown = {"service": "shop", "queue": "default", "task_type": "<unknown>", "reason": "unknown_type"}
    assert value(found, "router_tasks_archived_total", **unknown) == 1  # never the message's own type as a label
    r.close()
    promtool_check(text)
    _documented(text)


def _documented(text: str) -> None:
    doc = DOC.read_text()
    missing = sorted(name for name in families(text) if not name.endswith("_created")
                     and not re.search(rf"`{re.escape(name)}(_total)?`", doc))
    assert not missing, f"docs/metrics.md does not describe {missing}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def group_fleet(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    module = f"metricsapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import router\napp = router.Service('shop')\n"
        "@app.handler('shop.order')\ndef order(task):\n    assert not task.payload.get('fail'), 'planned'\n"
        "@app.handler('shop.flaky')\ndef flaky(task):\n    raise RuntimeError('again')\n"
        "@app.handler('shop.alert')\ndef alert(task):\n    import time\n    time.sleep(task.payload.get('sleep', 0))\n")
    services = {"shop": {**SERVICES["shop"], "app": f"{module}:app"}}
    path = write_registry_yaml(tmp_path / "services.yaml", services, redis_url)
    yield {"path": path, "url": redis_url, "reg": build_registry(redis_url, services)}


def _port(wp: WorkerProcess, event: str) -> int:
    found = wait_for(lambda: wp.find(event), 20, f"the {event} log event\n{wp.log_tail()}")
    return int(found[0]["port"])


def test_a_process_group_serves_one_endpoint_that_survives_a_crash(group_fleet: dict[str, Any]) -> None:
    args = ["worker", "--service", "shop", "--registry", str(group_fleet["path"]), "--url", group_fleet["url"],
            "--processes", "2", "--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--concurrency", "4",
            "--maintenance-s", "0.2", "--heartbeat-s", "0.2", "--log-format", "json"]
    wp = spawn_router(args)
    try:
        port = _port(wp, "metrics_serving")
        pids = wait_for(lambda: wp.find("worker_group_started"), 20, "the group")[0]["pids"]
        with router.Client(group_fleet["reg"], url=group_fleet["url"]) as c:
            c.enqueue_many([("shop.order", {"n": n}) for n in range(40)])
            c.enqueue_many([("shop.order", {"fail": True}) for _ in range(4)])
            c.enqueue_many([("shop.alert", {}) for _ in range(6)])
        labels = {"service": "shop", "queue": "default", "task_type": "shop.order"}

        def settled() -> Samples | None:
            found = samples(scrape(port, wp))
            done = value(found, "router_tasks_processed_total", **labels)
            return found if done == 40 and value(found, "router_tasks_failed_total", **labels) == 4 else None

        found = wait_for(settled, 30, "every task to be counted by the group's endpoint")
        assert value(found, "router_tasks_archived_total", **labels, reason="max_retry_exceeded") == 4
        assert value(found, "router_tasks_processed_total", service="shop", queue="critical",
                     task_type="shop.alert") == 6
        assert value(found, "router_task_duration_seconds_count", **labels) == 44
        assert value(found, "router_worker_process_restarts_total", service="shop") == 0
        text = scrape(port, wp)
        promtool_check(text)
        _documented(text)
        # A child killed outright is restarted; the endpoint counts the restart and keeps the dead child's totals.
        os.kill(pids[0], signal.SIGKILL)
        restarted = wait_for(lambda: value(samples(scrape(port, wp)), "router_worker_process_restarts_total",
                                           service="shop") == 1 or None, 20, "the restart to be counted")
        assert restarted
        after = samples(scrape(port, wp))
        assert value(after, "router_tasks_processed_total", **labels) == 40
        with router.Client(group_fleet["reg"], url=group_fleet["url"]) as c:
            c.enqueue_many([("shop.order", {"n": n}) for n in range(5)])
        wait_for(lambda: value(samples(scrape(port, wp)), "router_tasks_processed_total", **labels) == 45, 20,
                 "the restarted group to count new tasks on top")
        wp.signal(signal.SIGTERM)
        assert wp.wait(20) == 0
    finally:
        wp.kill()


def test_a_worker_serves_metrics_in_one_process_and_refuses_a_taken_port(group_fleet: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = subprocess.run(
            [*_router(), "worker", "--service", "shop", "--registry", str(group_fleet["path"]), "--url",
             group_fleet["url"], "--burst", "--metrics-port", str(busy), "--metrics-addr", "127.0.0.1"],
            capture_output=True, text=True, timeout=60, env=env_without_pythonpath(), cwd=REPO, check=False)
    assert done.returncode == 2 and f"cannot serve worker metrics on 127.0.0.1:{busy}" in done.stderr
    wp = spawn_router(["worker", "--service", "shop", "--registry", str(group_fleet["path"]), "--url",
                       group_fleet["url"], "--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--log-format",
                       "json"])
    try:
        port = _port(wp, "metrics_serving")
        with router.Client(group_fleet["reg"], url=group_fleet["url"]) as c:
            c.enqueue_many([("shop.alert", {}) for _ in range(3)])
        alert = {"service": "shop", "queue": "critical", "task_type": "shop.alert"}
        wait_for(lambda: value(samples(scrape(port)), "router_tasks_processed_total", **alert) == 3, 20,
                 "the single process's endpoint to count the tasks")
        text = scrape(port)
        assert value(samples(text), "router_worker_process_restarts_total", service="shop") == 0
        promtool_check(text)
        with router.Client(group_fleet["reg"], url=group_fleet["url"]) as c:
            c.enqueue("shop.alert", {"sleep": 3})
        wait_for(lambda: value(samples(scrape(port)), "router_tasks_in_flight", **alert) == 1, 10,
                 "the running handler in the in-flight gauge")
        wait_for(lambda: value(samples(scrape(port)), "router_tasks_in_flight", **alert) == 0
                 and value(samples(scrape(port)), "router_tasks_processed_total", **alert) == 4, 15,
                 "the in-flight gauge back to 0 once the handler returned")
    finally:
        wp.signal(signal.SIGTERM)
        wp.wait(20)
        wp.kill()


def _router() -> list[str]:
    import sys  # noqa: PLC0415

    return [sys.executable, "-m", "router"]


def test_the_exporter_serves_queue_gauges(group_fleet: dict[str, Any], tmp_path: Path) -> None:
    reg = group_fleet["reg"]
    with router.Client(reg, url=group_fleet["url"]) as c:
        c.enqueue_many([("shop.order", {"n": n}) for n in range(7)])
        c.enqueue("shop.alert", {}, process_in=600)
    r = raw_client(group_fleet["url"])
    r.set(qk(reg, "shop", "critical").paused, 1)
    r.close()
    base = ["--registry", str(group_fleet["path"]), "--url", group_fleet["url"], "--addr", "127.0.0.1",
            "--log-format", "json"]
    wp = spawn_router(["exporter", *base, "--port", "0", "--service", "shop", "--log-level", "INFO"])
    try:
        port = _port(wp, "exporter_started")
        text = scrape(port)
        found = samples(text)
        assert value(found, "router_redis_up") == 1
        assert value(found, "router_queue_tasks", service="shop", queue="default", state="pending") == 7
        assert value(found, "router_queue_tasks", service="shop", queue="critical", state="scheduled") == 1
        assert value(found, "router_queue_paused", service="shop", queue="critical") == 1
        assert value(found, "router_queue_oldest_pending_age_seconds", service="shop", queue="default") >= 0
        assert ("router_service_live_workers", frozenset({("service", "shop")})) in found
        assert value(found, "router_queue_processed_total", service="shop", queue="default") == 0
        promtool_check(text)
        _documented(text)
        wp.signal(signal.SIGTERM)
        assert wp.wait(20) == 0 and wp.has_event("exporter_stopped")
    finally:
        wp.kill()
    down = spawn_router(["exporter", *base[:2], "--url", "redis://127.0.0.1:1/0", *base[4:], "--port", "0"])
    try:
        port = _port(down, "exporter_started")
        assert samples(scrape(port)) == {("router_redis_up", frozenset()): 0.0}  # up, and says Redis is not
    finally:
        down.signal(signal.SIGINT)
        assert down.wait(20) == 0
        down.kill()


def test_exporter_exit_codes(group_fleet: dict[str, Any], tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_router(), "exporter", *args], capture_output=True, text=True, timeout=60,
                              env=env_without_pythonpath(), cwd=REPO, check=False)

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nservices: {shop: {tasks: {x: {queue: nope}}}}\n")
    assert run("--registry", str(broken), "--port", "0").returncode == 1
    unknown = run("--registry", str(group_fleet["path"]), "--service", "nope", "--port", "0")
    assert unknown.returncode == 2 and "no service 'nope'" in unknown.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run("--registry", str(group_fleet["path"]), "--addr", "127.0.0.1", "--port",
                   str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot serve the exporter" in busy.stderr


def test_exporter_reads_router_registry_and_router_redis_url(group_fleet: dict[str, Any]) -> None:
    env = env_without_pythonpath({"ROUTER_REGISTRY": str(group_fleet["path"]), "ROUTER_REDIS_URL": group_fleet["url"]})
    wp = spawn_router(["exporter", "--port", "0", "--addr", "127.0.0.1", "--log-format", "json"], env=env)
    try:
        port = _port(wp, "exporter_started")
        assert value(samples(scrape(port)), "router_redis_up") == 1
    finally:
        wp.signal(signal.SIGTERM)
        wp.wait(20)
        wp.kill()


def test_the_exporter_shows_schedulers_and_cron_entries_for_alerts(redis_url: str, tmp_path: Path) -> None:
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [
        {"name": "every-second", "task": "svc.tick", "spec": "* * * * * *", "payload": {"n": 1}},
        {"name": "nightly", "task": "svc.alert", "spec": "0 2 * * *", "payload": {"n": 2}}])
    exporter = spawn_router(["exporter", "--registry", str(path), "--url", redis_url, "--port", "0", "--addr",
                             "127.0.0.1", "--log-format", "json"])
    scheduler = start_scheduler(path, redis_url, "--heartbeat-s", "0.2")
    try:
        port = _port(exporter, "exporter_started")
        wait_for(lambda: scheduler.find("cron_fired"), 20, "a fire")
        every = {"entry": "every-second", "service": "svc", "queue": "default", "task_type": "svc.tick"}

        def seen() -> Samples | None:
            found = samples(scrape(port))
            return found if value(found, "router_cron_entry_schedulers", **every) == 1 else None

        found = wait_for(seen, 10, "the scheduler's heartbeat in the exporter")
        assert value(found, "router_service_live_schedulers", service="svc") == 1
        assert value(found, "router_cron_last_fire_timestamp_seconds", **every) > 1.7e9
        nightly = {"entry": "nightly", "service": "svc", "queue": "critical", "task_type": "svc.alert"}
        assert ("router_cron_last_fire_timestamp_seconds", frozenset(nightly.items())) not in found  # never fired
        assert value(found, "router_cron_next_fire_timestamp_seconds", **nightly) > 1.7e9
        text = scrape(port)
        promtool_check(text)
        _documented(text)
        scheduler.signal(signal.SIGTERM)
        assert scheduler.wait(20) == 0
        gone = wait_for(lambda: value(samples(scrape(port)), "router_service_live_schedulers", service="svc") == 0
                        or None, 10, "the withdrawn heartbeat")
        assert gone and value(samples(scrape(port)), "router_cron_entry_schedulers", **every) == 0
    finally:
        scheduler.kill()
        exporter.signal(signal.SIGTERM)
        exporter.wait(20)
        exporter.kill()


def test_the_group_endpoint_leaves_out_a_file_it_cannot_read(tmp_path: Path) -> None:
    """A child killed in the middle of a write can leave a torn file: the parent's endpoint still serves the others."""
    writer = textwrap.dedent("""
        from prometheus_client import Counter
        Counter("router_tasks_processed", "x", ["service"]).labels("shop").inc(7)
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", writer], env=env, check=True, timeout=30)
    (tmp_path / "counter_999999.db").write_bytes(b"\xff\x00\x00\x00torn")  # says 255 bytes used, holds 8
    (tmp_path / "counter_999998.db").write_bytes(b"")  # created, never written
    text = generate_latest(group_registry(str(tmp_path))).decode()
    assert value(samples(text), "router_tasks_processed_total", service="shop") == 7
