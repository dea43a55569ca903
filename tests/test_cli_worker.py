"""`router worker` as users run it: exit codes 1, 2, 3, 4 and 5, every option reaching the worker, ``--burst`` and
``--allow-handler-mismatch`` in a subprocess, ``ROUTER_REGISTRY`` / ``ROUTER_REDIS_URL``, service code imported
from beside the registry or from ``--app-dir``, a Redis that is unreachable or comes up late, the log options, and
a process group that gives up on children that keep failing."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import (
    Fleet,
    InProcess,
    env_without_pythonpath,
    make_invoker,
    run_router,
    spawn_router,
    write_fleet,
)
from enginekit import qk, raw_client, wait_for, workers
from enginekit import stats as qstats

import router
from router.ops import cli
from router.ops.localredis import RedisServer
from router.worker.fetch import Fetcher
from router.worker.launch import WorkerCommand
from router.worker.settings import WorkerSettings


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcess]:
    return make_invoker(monkeypatch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


def enqueue(fleet: Fleet, url: str, n: int, task_type: str = "svc.job") -> router.Registry:
    registry = router.load(fleet.registry)
    with router.Client(registry, url=url) as client:
        client.enqueue_many([(task_type, {"i": i}) for i in range(n)])
    return registry


def processed(registry: router.Registry, url: str) -> int:
    r = raw_client(url)
    try:
        return qstats(r, qk(registry, "svc")).get("processed", 0)
    finally:
        r.close()


# --- exit codes, in process -------------------------------------------------------------------------------------


def test_an_invalid_registry_exits_1_naming_the_problem(invoke: Callable[..., InProcess], tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  svc:\n    tasks:\n      svc.job: {queue: nope}\n")
    res = invoke("worker", "-r", str(path), "-s", "svc")
    assert res.code == 1, res.output
    assert res.output.startswith("error: 1 problem(s) in the registry:")
    assert f"{path}:5:" in res.output and "'nope'" in res.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["-s", "nope"], "error: no service 'nope' in the registry (known: svc)"),
    (["-s", "svc", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    (["-s", "svc", "--processes", "x"], "Invalid value for '--processes'"),
    (["-s", "svc", "--log-format", "xml"], "Invalid value for '--log-format'"),
    (["-s", "svc", "--bogus"], "No such option '--bogus'"),
    ([], "Missing option '--service'"),
])
def test_an_unknown_service_or_a_bad_option_exits_2(
    invoke: Callable[..., InProcess], tmp_path: Path, args: list[str], fragment: str
) -> None:
    fleet = write_fleet(tmp_path)
    res = invoke("worker", "-r", str(fleet.registry), *args)
    assert res.code == 2, res.output
    assert fragment in res.output


def test_handlers_that_disagree_or_do_not_import_exit_3(invoke: Callable[..., InProcess], tmp_path: Path) -> None:
    lacking = write_fleet(tmp_path / "lacking", handled=["svc.job"], declared=["svc.job", "svc.other"])
    res = invoke("worker", "-r", str(lacking.registry), "-s", "svc", "--burst")
    assert res.code == 3, res.output
    assert res.output.startswith("error: worker for service 'svc' refuses to start:")
    assert "svc.other" in res.output

    missing = write_fleet(tmp_path / "missing")
    (missing.code_dir / f"{missing.module}.py").unlink()
    res = invoke("worker", "-r", str(missing.registry), "-s", "svc", "--burst")
    assert res.code == 3, res.output
    assert f"No module named '{missing.module}'" in res.output


def test_a_dead_internal_loop_exits_5(
    invoke: Callable[..., InProcess], tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = write_fleet(tmp_path)

    def broken_plan(self: Fetcher, group: Any) -> Any:
        raise RuntimeError("planned failure of the wake-up planner")

    monkeypatch.setattr(Fetcher, "wake_plan", broken_plan)
    start = time.monotonic()
    res = invoke("worker", "-r", str(fleet.registry), "-s", "svc", "--url", redis_url)  # long-running, not --burst
    assert res.code == 5, res.output
    assert time.monotonic() - start < 20
    assert res.result.stderr.startswith("error: a worker thread died (RuntimeError: planned failure")
    names = [e["event"] for e in res.logs]
    assert names.index("worker_started") < names.index("worker_stopped")


# --- every option reaches the worker ------------------------------------------------------------------------------


def test_every_worker_option_reaches_the_worker_command(
    invoke: Callable[..., InProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[WorkerCommand] = []
    logs: list[tuple[str, str]] = []
    monkeypatch.setattr(cli, "run_worker", lambda cmd, exit_code: commands.append(cmd) or 0)
    monkeypatch.setattr(cli, "configure_logs", lambda fmt, level: logs.append((fmt, level)))
    res = invoke(
        "worker", "--registry", "fleet/services.yaml", "--service", "svc", "--url", "redis://h:1/2",
        "--app-dir", str(tmp_path), "--concurrency", "7", "--processes", "3", "--burst", "--lease-s", "12.5",
        "--shutdown-timeout-s", "4", "--heartbeat-s", "1.5", "--maintenance-s", "0.25", "--recovery-grace-s", "0.5",
        "--prefetch", "0", "--archive-max-size", "77", "--archive-max-age-s", "3600", "--allow-handler-mismatch",
        "--log-format", "json", "--log-level", "DEBUG",
    )
    assert res.code == 0, res.output
    settings = WorkerSettings(concurrency=7, prefetch=0, lease_s=12.5, shutdown_timeout_s=4.0, heartbeat_s=1.5,
                              maintenance_s=0.25, recovery_grace_s=0.5, archive_max_size=77,
                              archive_max_age_s=3600.0)
    assert commands == [WorkerCommand("fleet/services.yaml", "svc", "redis://h:1/2", 3, True, True, settings,
                                      str(tmp_path))]
    assert logs == [("json", "DEBUG")]

    # Short options, and the library's defaults when nothing is given (concurrency 0: the service's own).
    res = invoke("worker", "-r", "services.yaml", "-s", "svc", "-c", "2", "-p", "1")
    assert res.code == 0, res.output
    assert commands[-1] == WorkerCommand("services.yaml", "svc", None, 1, False, False,
                                         WorkerSettings(concurrency=2), None)
    res = invoke("worker", "-s", "svc")
    assert commands[-1].settings == dataclasses.replace(WorkerSettings(), concurrency=0)
    assert logs[-1] == ("auto", "INFO")

    # The environment stands in for --registry and --url; the options win over it.
    env = {"ROUTER_REGISTRY": "/etc/router/services.yaml", "ROUTER_REDIS_URL": "redis://from-env:6379/0"}
    invoke("worker", "-s", "svc", env=env)
    assert (commands[-1].registry_path, commands[-1].url) == ("/etc/router/services.yaml", "redis://from-env:6379/0")
    invoke("worker", "-s", "svc", "-r", "mine.yaml", "--url", "redis://mine:1/0", env=env)
    assert (commands[-1].registry_path, commands[-1].url) == ("mine.yaml", "redis://mine:1/0")


# --- subprocesses -------------------------------------------------------------------------------------------------


def worker_args(fleet: Fleet, url: str, *extra: str) -> list[str]:
    return ["worker", "-r", str(fleet.registry), "-s", "svc", "--url", url, "--log-format", "json", *extra]


def test_burst_worker_drains_the_queue_and_exits_0(redis_url: str, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path)
    registry = enqueue(fleet, redis_url, 5)
    run = run_router(worker_args(fleet, redis_url, "--burst"), cwd=tmp_path)
    assert run.code == 0, run.stderr
    [stopped] = run.find("worker_stopped")
    assert stopped["processed"] == 5
    assert processed(registry, redis_url) == 5
    assert run.names().index("worker_started") < run.names().index("worker_stopped")


def test_allow_handler_mismatch_starts_and_says_so_once_per_process(redis_url: str, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path, handled=["svc.job"], declared=["svc.job", "svc.other"])
    registry = enqueue(fleet, redis_url, 4)
    refused = run_router(worker_args(fleet, redis_url, "--burst"), cwd=tmp_path)
    assert refused.code == 3
    assert len(refused.other) == 1 and refused.other[0].startswith("error: worker for service 'svc' refuses")
    assert processed(registry, redis_url) == 0

    one = run_router(worker_args(fleet, redis_url, "--burst", "--allow-handler-mismatch"), cwd=tmp_path)
    assert one.code == 0, one.stderr
    [overridden] = one.find("handler_mismatch_overridden")
    assert "svc.other" in overridden["problem"]
    assert processed(registry, redis_url) == 4

    enqueue(fleet, redis_url, 4)
    group = run_router(worker_args(fleet, redis_url, "--burst", "--allow-handler-mismatch", "--processes", "2"),
                       cwd=tmp_path)
    assert group.code == 0, group.stderr
    assert len(group.find("handler_mismatch_overridden")) == 2, "once in each of the two processes"
    assert processed(registry, redis_url) == 8


def test_router_registry_and_router_redis_url_stand_in_for_the_options(redis_url: str, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet")  # its redis.url is a port nothing listens on
    registry = enqueue(fleet, redis_url, 3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = env_without_pythonpath({"ROUTER_REGISTRY": str(fleet.registry), "ROUTER_REDIS_URL": redis_url})
    run = run_router(["worker", "-s", "svc", "--burst", "--log-format", "json"], cwd=elsewhere, env=env)
    assert run.code == 0, run.stderr
    assert processed(registry, redis_url) == 3


def test_service_code_beside_the_registry_is_imported_from_any_directory(redis_url: str, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet")
    registry = enqueue(fleet, redis_url, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = env_without_pythonpath()
    plain = subprocess.run([sys.executable, "-c", f"import {fleet.module}"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=False)
    assert plain.returncode != 0, "the module must not be importable without router's help"
    run = run_router(worker_args(fleet, redis_url, "--burst"), cwd=elsewhere, env=env)
    assert run.code == 0, run.stderr
    assert processed(registry, redis_url) == 2


def test_app_dir_names_where_service_code_lives(redis_url: str, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", code_dir=tmp_path / "code")
    registry = enqueue(fleet, redis_url, 2)
    without = run_router(worker_args(fleet, redis_url, "--burst"), cwd=tmp_path)
    assert without.code == 3
    assert f"No module named '{fleet.module}'" in without.stderr
    run = run_router(worker_args(fleet, redis_url, "--burst", "--app-dir", str(fleet.code_dir)), cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert processed(registry, redis_url) == 2


def test_burst_worker_that_cannot_reach_redis_exits_4_naming_the_url(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path)
    url = f"redis://127.0.0.1:{_free_port()}/0"
    run = run_router(worker_args(fleet, url, "--burst"), cwd=tmp_path, timeout_s=60)
    assert run.code == 4, run.stderr
    assert 9 <= run.seconds <= 25, f"the connect wait is about 10 s, took {run.seconds:.1f} s"
    assert len(run.other) == 1, run.other
    assert re.match(rf"error: cannot reach Redis at {re.escape(url)} after 1\d s \(.*\); check --url", run.other[0])
    assert "Traceback" not in run.stderr
    assert "worker_started" not in run.names()


def test_worker_started_before_redis_logs_unavailable_then_starts_once_connected(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with workers() as procs:
        w = spawn_router(worker_args(fleet, url, "--heartbeat-s", "0.2"), cwd=tmp_path)
        procs.append(w)
        wait_for(lambda: w.has_event("redis_unavailable"), 20, f"redis_unavailable\n{w.log_tail()}")
        assert not w.has_event("worker_started")
        [unavailable] = w.find("redis_unavailable")
        assert unavailable["url"] == url
        with RedisServer(port=port) as server:
            wait_for(lambda: w.has_event("worker_started"), 20, f"worker_started\n{w.log_tail()}")
            names = w.event_names()
            assert names.index("redis_unavailable") < names.index("redis_available") < names.index("worker_started")
            registry = enqueue(fleet, server.url, 1)
            wait_for(lambda: processed(registry, server.url) == 1, 10, "the task enqueued once Redis was up")
            w.signal(15)
            assert w.wait(15) == 0, w.log_tail()


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        admin = server.client()
        admin.config_set("requirepass", "s3cret")  # after start: the readiness check pings without one
        admin.close()
        yield server


def test_process_group_gives_up_after_5_crashes_in_a_minute(locked_server: RedisServer, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path)
    url = f"redis://:wrong@127.0.0.1:{locked_server.port}/0"
    run = run_router(worker_args(fleet, url, "--processes", "2"), cwd=tmp_path, timeout_s=60)
    assert run.code == 1, run.stderr[-3000:]
    died = run.find("worker_process_died")
    assert len(died) == 6 and {e["exitcode"] for e in died} == {4}
    assert [e["restarts_last_minute"] for e in died] == [1, 2, 3, 4, 5, 6]
    failed = run.find("worker_process_failed")
    assert len(failed) >= 6 and {e["exitcode"] for e in failed} == {4}
    assert all("credentials" in e["error"] for e in failed)
    assert "Traceback" not in run.stderr and run.other == []
    assert len(run.find("worker_group_started")) == 1


@pytest.mark.parametrize(("args", "check"), [
    (["--log-format", "json"], "json-info"),
    (["--log-format", "json", "--log-level", "ERROR"], "silent"),
    (["--log-format", "console", "--log-level", "WARNING"], "console-warnings"),
])
def test_log_format_and_level(redis_url: str, tmp_path: Path, args: list[str], check: str) -> None:
    fleet = write_fleet(tmp_path)
    run = run_router(["worker", "-r", str(fleet.registry), "-s", "svc", "--url", redis_url, "--burst", *args],
                     cwd=tmp_path)
    assert run.code == 0, run.stderr
    if check == "json-info":
        assert {"worker_started", "worker_stopped", "redis_config_risky"} <= set(run.names()) and run.other == []
        assert all(json.loads(line) for line in run.stderr.splitlines())
    elif check == "silent":
        assert run.stderr == ""
    else:
        assert run.events == [] and any("redis_config_risky" in line for line in run.other)
        assert not any("worker_started" in line for line in run.other), "INFO is below --log-level WARNING"
