"""Helpers for the scheduler tests: a small fleet with cron entries (in code or as services.yaml), the ids a queue
holds, and ``router scheduler`` subprocesses whose JSON log lines are collected."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from enginekit import REPO, WorkerProcess, build_registry, subprocess_env, task, write_registry_yaml

from router.registry.model import CatchUp, CronSpec, Registry
from router.storage.keys import QueueKeys

PAYLOAD_SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}},
                  "additionalProperties": False}

#: One service ``svc`` with two queues; ``svc.tick`` runs on default, ``svc.alert`` on critical.
SERVICES: dict[str, Any] = {
    "svc": {
        "queues": {"default": 1, "critical": 1},
        "tasks": {"svc.tick": task("default", PAYLOAD_SCHEMA), "svc.alert": task("critical", PAYLOAD_SCHEMA)},
    }
}


def entry(name: str, spec: str, tz: str = "UTC", *, task_type: str = "svc.tick", catch_up: CatchUp = CatchUp.LATEST,
          payload: Mapping[str, Any] | None = None) -> CronSpec:
    """A cron entry (built in code: the loader's checks are not applied, so tests can give bad payloads)."""
    return CronSpec(name, task_type, spec, tz, dict(payload if payload is not None else {"n": 1}), catch_up)


def cron_registry(url: str, *entries: CronSpec, max_payload_bytes: int = 512 * 1024) -> Registry:
    """The ``SERVICES`` fleet with ``entries``."""
    return dataclasses.replace(build_registry(url, SERVICES, max_payload_bytes=max_payload_bytes), cron=entries)


def write_cron_yaml(path: Path, url: str, entries: Sequence[Mapping[str, Any]]) -> Path:
    """``SERVICES`` and ``entries`` (YAML-shaped dicts) as a services.yaml for subprocesses."""
    write_registry_yaml(path, SERVICES, url)
    doc = yaml.safe_load(path.read_text())
    doc["cron"] = [dict(e) for e in entries]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def queue_ids(client: Any, qk: QueueKeys) -> Counter[str]:
    """How many times each task id sits in the queue's pending list (more than once would be a duplicate)."""
    return Counter(raw.decode() for raw in client.lrange(qk.pending, 0, -1))


def start_scheduler(registry_path: Path, url: str, *args: str) -> WorkerProcess:
    """A ``python -m router scheduler`` subprocess (JSON logs collected from stderr)."""
    cmd = [sys.executable, "-m", "router", "scheduler", "--registry", str(registry_path), "--url", url,
           "--log-format", "json", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, bufsize=1)
    sp = WorkerProcess(proc)
    sp._reader = threading.Thread(target=sp._read, daemon=True)
    sp._reader.start()
    return sp
