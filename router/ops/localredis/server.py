"""A throwaway ``redis-server`` on a free loopback port, in its own temporary directory, stopped by its PID: what
``router demo`` runs on, and the single server of the test fixtures and benchmarks. Restartable on the same port
and directory, so with ``appendonly=True`` an append-only file is replayed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from router.errors import LocalRedisError
from router.ops.localredis.binary import find_redis_server
from router.ops.localredis.process import (
    DIR_PREFIX,
    LOOPBACK,
    OWNER_FILE,
    SERVER_PID_FILE,
    death_signal_hook,
    pick_free_port,
    track,
    untrack,
    wait_until,
)

_LOG_FILE = "redis.log"
_PORT_ATTEMPTS = 8


class _PortTaken(LocalRedisError):
    pass


# --- single server -------------------------------------------------------------------------------


class RedisServer:
    """One ``redis-server`` process on a free loopback port, in its own temporary directory.

    Use it as a context manager or call :meth:`start` and :meth:`stop`. :meth:`restart` and :meth:`kill`
    followed by :meth:`start` keep the port and the directory, so with ``appendonly=True`` the data survives.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
        reserve_bus_port: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        """Configure, without starting, a server.

        ``extra_args`` are appended to the command line (``["--maxmemory", "10mb"]``). ``port`` fixes the
        port instead of picking a free one. ``reserve_bus_port`` also requires port + 10000 to be free (for
        cluster nodes). ``die_with_parent`` asks Linux to SIGTERM the server when this process dies.
        """
        self._appendonly = appendonly
        self._extra_args = tuple(extra_args)
        self._requested_port = port
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        self._reserve_bus_port = reserve_bus_port
        self._die_with_parent = die_with_parent
        self._port: int | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # properties

    @property
    def host(self) -> str:
        """The address the server listens on (always loopback)."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The TCP port; kept across :meth:`restart` and :meth:`kill`."""
        if self._port is None:
            raise LocalRedisError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``redis.Redis.from_url``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The PID of the running ``redis-server`` process."""
        if self._proc is None:
            raise LocalRedisError("the server is not running")
        return self._proc.pid

    @property
    def dir(self) -> Path:
        """The server's working directory (its AOF, RDB, log and config live there)."""
        if self._dir is None:
            raise LocalRedisError("the server has not been started")
        return self._dir

    @property
    def log_path(self) -> Path:
        """The file that receives the server's log."""
        return self.dir / _LOG_FILE

    @property
    def is_running(self) -> bool:
        """Whether the process was started by us and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` connected to this server; ``kwargs`` go to its constructor."""
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    # lifecycle

    def start(self) -> RedisServer:
        """Start the server and wait (polling PING, with a deadline) until it answers; return ``self``.

        After :meth:`kill` or a stop inside :meth:`restart` the same port and directory are reused.
        """
        if self.is_running:
            raise LocalRedisError(f"redis-server is already running (pid {self.pid})")
        binary = self._binary or find_redis_server()
        created_dir = self._dir is None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
            (self._dir / OWNER_FILE).write_text(str(os.getpid()))
        try:
            return self._start_in_dir(binary)
        except BaseException:
            if created_dir:  # the log tail is in the exception; nothing else there is worth keeping
                shutil.rmtree(self.dir, ignore_errors=True)
                self._dir = None
            raise

    def _start_in_dir(self, binary: str) -> RedisServer:
        fixed = self._port if self._port is not None else self._requested_port
        attempts = 1 if fixed is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            port = fixed if fixed is not None else pick_free_port(self._reserve_bus_port)
            try:
                self._launch(binary, port)
            except BaseException as exc:
                if fixed is None:
                    self._port = None
                if not isinstance(exc, _PortTaken):
                    raise
                if fixed is not None:
                    raise LocalRedisError(f"port {port} is taken; cannot start redis-server on it") from None
                if attempt == attempts - 1:
                    raise LocalRedisError(f"lost the race for a free port {attempts} times") from None
                continue
            return self
        raise AssertionError("unreachable")

    def _command(self, binary: str, port: int) -> list[str]:
        return [
            binary,
            *self._leading_args(),
            "--port", str(port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            *self._extra_args,
        ]  # fmt: skip

    def _leading_args(self) -> list[str]:
        """Arguments placed before the options (a config file path); subclasses override."""
        return []

    def _launch(self, binary: str, port: int) -> None:
        log_path = self.log_path
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        preexec = death_signal_hook() if self._die_with_parent else None
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self._command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.dir),
                preexec_fn=preexec,  # noqa: PLW1509 - used only when single-threaded, see death_signal_hook
            )
        self._proc = proc
        self._port = port
        track(self)
        (self.dir / SERVER_PID_FILE).write_text(str(proc.pid))
        try:
            self._wait_ready(proc, log_offset)
        except BaseException:
            self._terminate(graceful=False, timeout_s=5.0)
            raise

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> None:
        # No retries: redis-py's default retry turns one unanswered PING into ~15 s.
        probe = redis.Redis(
            host=self.host,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )

        def ready() -> bool:
            if proc.poll() is not None:
                raise _Exited(proc.returncode)
            try:
                return bool(probe.ping())
            except (redis.ConnectionError, redis.TimeoutError):  # incl. BusyLoadingError during AOF replay
                probe.connection_pool.disconnect()
                return False

        try:
            wait_until(
                ready,
                timeout_s=self._startup_timeout_s,
                what=f"redis-server on port {self.port}",
                ignore=(redis.RedisError, OSError),
            )
        except _Exited as exited:
            log = self._log_since(log_offset)
            if "Address already in use" in log:
                raise _PortTaken(f"port {self.port} is taken") from None
            raise LocalRedisError(
                f"redis-server exited with code {exited.code} during startup; log:\n{log[-3000:]}"
            ) from None
        except TimeoutError as exc:
            log = self._log_since(log_offset)
            raise LocalRedisError(f"{exc}; log:\n{log[-3000:]}") from None
        finally:
            probe.close()

    def _terminate(self, *, graceful: bool, timeout_s: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            sig = signal.SIGTERM if graceful else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
        self._proc = None
        untrack(self)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after ``timeout_s``) and remove its directory.

        Safe to call twice or on a server that was never started. A later :meth:`start` picks a new port.
        """
        self._terminate(graceful=True, timeout_s=timeout_s)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._port = None

    def kill(self) -> None:
        """Crash the server with SIGKILL; port and directory are kept for a later :meth:`start`."""
        self._terminate(graceful=False, timeout_s=10.0)

    def restart(self, *, hard: bool = False, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``hard``) and start it on the same port and directory.

        With ``appendonly=True`` the append-only file is replayed, so acknowledged writes survive.
        """
        self._terminate(graceful=not hard, timeout_s=timeout_s)
        self.start()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP (clients then time out); undo with :meth:`resume`."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a server frozen by :meth:`pause` (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self._proc is not None else "stopped"
        return f"RedisServer(port={self._port}, {state})"


class _Exited(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code

