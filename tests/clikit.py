"""Helpers for tests of the ``router`` command: fleets written to a directory (registry + service code), the command
run as a subprocess (JSON log events and other stderr lines separated), or in-process through click's CliRunner
without touching the process-wide structlog configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result
from enginekit import REPO, WorkerProcess, task, write_registry_yaml

from router.ops import cli

PLACEHOLDER_URL = "redis://127.0.0.1:1/0"  # a registry URL nothing listens on: tests pass the real one


@dataclass(frozen=True)
class Fleet:
    """A registry file and the service code it names, written by :func:`write_fleet`."""

    registry: Path
    code_dir: Path
    module: str
    services: dict[str, Any]


def write_fleet(
    registry_dir: Path,
    *,
    handled: Sequence[str] = ("svc.job",),
    declared: Sequence[str] = ("svc.job",),
    url: str = PLACEHOLDER_URL,
    code_dir: Path | None = None,
    body: str = "return None",
) -> Fleet:
    """One service ``svc`` declaring ``declared`` task types, whose code (a uniquely named module, in ``code_dir``,
    by default next to the registry) handles ``handled`` with ``body``."""
    module = f"svcapp_{uuid.uuid4().hex[:10]}"
    code = code_dir or registry_dir
    code.mkdir(parents=True, exist_ok=True)
    registry_dir.mkdir(parents=True, exist_ok=True)
    lines = ["import router", "app = router.Service('svc')", ""]
    for i, t in enumerate(handled):
        lines += [f"@app.handler({t!r})", f"def handler_{i}(task):", f"    {body}", ""]
    (code / f"{module}.py").write_text("\n".join(lines))
    services = {"svc": {"app": f"{module}:app", "queues": {"default": 1}, "tasks": {t: task() for t in declared}}}
    path = write_registry_yaml(registry_dir / "services.yaml", services, url)
    return Fleet(path, code, module, services)


def env_without_pythonpath(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment minus PYTHONPATH and router's variables (router itself is installed)."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and k not in ("ROUTER_REGISTRY", "ROUTER_REDIS_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Run:
    """A finished ``router`` subprocess."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # stderr lines that are not JSON log events

    def find(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events]


def split_stderr(stderr: str) -> tuple[list[dict[str, Any]], list[str]]:
    events: list[dict[str, Any]] = []
    other: list[str] = []
    for line in stderr.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "event" in doc:
            events.append(doc)
        elif line.strip():
            other.append(line)
    return events, other


def run_router(args: Sequence[str], *, cwd: Path | str = REPO, env: Mapping[str, str] | None = None,
               timeout_s: float = 60) -> Run:
    """Run ``python -m router ARGS`` to completion."""
    start = time.monotonic()
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is what tests assert on
        [sys.executable, "-m", "router", *args], cwd=cwd, env=dict(env or env_without_pythonpath()),
        capture_output=True, text=True, timeout=timeout_s,
    )
    events, other = split_stderr(proc.stderr)
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start, events, other)


def spawn_router(args: Sequence[str], *, cwd: Path | str = REPO, env: Mapping[str, str] | None = None) -> WorkerProcess:
    """Start ``python -m router ARGS``; its stderr is collected as in enginekit.start_worker."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", *args], cwd=cwd, env=dict(env or env_without_pythonpath()),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    wp = WorkerProcess(proc)
    wp._reader = threading.Thread(target=wp._read, daemon=True)
    wp._reader.start()
    return wp


@dataclass
class InProcess:
    """``router`` through CliRunner, with structlog events captured instead of configured for the process."""

    result: Result
    logs: list[dict[str, Any]]

    @property
    def code(self) -> int:
        return self.result.exit_code

    @property
    def output(self) -> str:
        return self.result.output


def make_invoker(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcess]:
    """For a test module's ``invoke`` fixture: ``invoke(*args, env=None)`` runs the CLI in this process.

    ``configure_logs`` is a no-op here, since configuring structlog (and caching its loggers) for the whole test
    process would blind every later test's ``capture_logs``; ``sys.path`` is restored afterwards (``router worker``
    puts the code directory on it)."""
    monkeypatch.setattr(cli, "configure_logs", lambda *a, **k: None)
    monkeypatch.setattr(sys, "path", list(sys.path))

    def run(*args: str, env: Mapping[str, str] | None = None) -> InProcess:
        with structlog.testing.capture_logs() as logs:
            result = CliRunner().invoke(cli.main, list(args), env=dict(env or {}))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return InProcess(result, logs)

    return run
