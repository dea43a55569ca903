"""The benchmark's own Redis: ``router.devserver.RedisServer`` when available, else a minimal fallback.

Either way: a free loopback port, ``--save "" --appendonly no``, stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _fallback_server() -> Iterator[str]:
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway Redis and yield its URL."""
    try:
        from router.devserver import RedisServer  # noqa: PLC0415 - optional while router is being built
    except ImportError:
        with _fallback_server() as url:
            yield url
        return
    with RedisServer() as server:
        yield server.url
