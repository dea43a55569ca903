"""What a result was measured with: package versions, Redis ``INFO server``, the machine and the commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

REDIS_FIELDS = ("redis_version", "redis_mode", "os", "arch_bits", "multiplexing_api", "gcc_version")
ALWAYS = ("redis", "hiredis", "psutil", "matplotlib")


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed distribution versions; "missing" for those not installed."""
    out = {}
    for name in sorted({*names, *ALWAYS}):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def redis_info(client: redis.Redis) -> dict[str, Any]:
    """The interesting part of ``INFO server`` plus the persistence settings the benchmark relies on."""
    server = client.info("server")
    info: dict[str, Any] = {k: server.get(k) for k in REDIS_FIELDS}
    info["save"] = client.config_get("save").get("save")
    info["appendonly"] = client.config_get("appendonly").get("appendonly")
    return info


def git_commit(repo: Path) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """Python, OS, CPU count and memory of this machine."""
    mem_total = 0
    try:
        with open("/proc/meminfo") as fh:
            mem_total = int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_total / 2**30, 1),
    }
