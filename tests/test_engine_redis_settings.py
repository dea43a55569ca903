"""How a worker treats the Redis it meets: refused credentials stop it at once (BrokerError, CLI exit 4) instead
of being waited out like an outage; settings that can lose tasks are warned about at start."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog
from enginekit import REPO, build_registry, fast_settings, subprocess_env, task, write_registry_yaml

import router
from router.testing import RedisServer

SERVICES = {"svc": {"queues": {"default": 1}, "tasks": {"svc.job": task()}, "app": "no_such_module:app"}}


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        # Set the password after start: the readiness check pings without one. Stop works by PID.
        admin = server.client()
        admin.config_set("requirepass", "s3cret")
        admin.close()
        yield server


def test_worker_with_a_wrong_password_fails_fast(locked_server: RedisServer) -> None:
    url = f"redis://:wrong@127.0.0.1:{locked_server.port}/0"
    reg = build_registry(url, SERVICES)
    app = router.Service("svc")
    app.add("svc.job", lambda t: None)
    start = time.monotonic()
    with pytest.raises(router.BrokerError, match="credentials"):
        router.Worker(reg, app, url=url, settings=fast_settings()).run(burst=True)
    assert time.monotonic() - start < 10


def test_worker_cli_exits_4_on_refused_credentials(locked_server: RedisServer, tmp_path: Path) -> None:
    services = {"svc": {**SERVICES["svc"], "app": "authapp:app"}}
    path = write_registry_yaml(tmp_path / "services.yaml", services, "redis://127.0.0.1:1/0")
    (tmp_path / "authapp.py").write_text(
        "import router\napp = router.Service('svc')\napp.add('svc.job', lambda t: None)\n"
    )
    env = subprocess_env({"PYTHONPATH": str(tmp_path)})
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    url = f"redis://:wrong@127.0.0.1:{locked_server.port}/0"
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is what we assert on
        [sys.executable, "-m", "router", "worker", "-r", str(path), "-s", "svc", "--url", url, "--log-format", "json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "credentials" in proc.stderr


def test_worker_warns_about_settings_that_can_lose_tasks(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    app = router.Service("svc")
    app.add("svc.job", lambda t: None)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with structlog.testing.capture_logs() as logs:
            router.Worker(reg, app, url=redis_url, settings=fast_settings()).run(burst=True)
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
    risky = sorted(e["setting"] for e in logs if e["event"] == "redis_config_risky")
    assert risky == ["appendonly no", "maxmemory-policy allkeys-lru"]
