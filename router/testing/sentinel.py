"""A master, a replica and a Sentinel on free loopback ports, for tests."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from router.errors import LocalRedisError
from router.ops.localredis.process import wait_until
from router.ops.localredis.server import RedisServer
from router.testing.cluster import call as _call
from router.testing.cluster import parse_info as _parse_info

# --- sentinel ------------------------------------------------------------------------------------


class _SentinelProcess(RedisServer):
    """A ``redis-server --sentinel`` whose config file (which Sentinel rewrites) lives in its directory."""

    def __init__(self, *, master_name: str, master: RedisServer, binary: str | None, down_after_ms: int,
                 failover_timeout_ms: int) -> None:
        super().__init__(binary=binary)
        self._master_name = master_name
        self._master = master
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms

    def _leading_args(self) -> list[str]:
        config = self.dir / "sentinel.conf"
        if not config.exists():
            config.write_text(
                f"sentinel monitor {self._master_name} {self._master.host} {self._master.port} 1\n"
                f"sentinel down-after-milliseconds {self._master_name} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self._master_name} {self._failover_timeout_ms}\n"
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
        master_args: Sequence[str] = (),
        replica_args: Sequence[str] = (),
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 10000,
    ) -> None:
        """Configure, without starting, the trio; ``master_name`` is the name the Sentinel monitors.

        ``master_args`` and ``replica_args`` are appended to each server's command line. Either server may be the
        master after a failover, so a setting that matters to whichever is master goes to both (for instance
        ``["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]``). ``down_after_ms`` is how long the
        master must be unreachable before the Sentinel fails over.
        """
        self.master_name = master_name
        """The name the Sentinel knows the master by."""
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        self._replica_args = tuple(replica_args)
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        # Diskless sync would otherwise wait 5 s for more replicas before the first full sync.
        self.master = RedisServer(binary=binary, extra_args=["--repl-diskless-sync-delay", "0", *master_args])
        """The master's server."""
        self.replica: RedisServer | None = None
        """The replica's server (set by :meth:`start`)."""
        self.sentinel: RedisServer | None = None
        """The Sentinel's server (set by :meth:`start`)."""

    @property
    def sentinel_address(self) -> tuple[str, int]:
        """``(host, port)`` of the Sentinel, for ``redis.sentinel.Sentinel([...])``."""
        if self.sentinel is None:
            raise LocalRedisError("the sentinel setup has not been started")
        return (self.sentinel.host, self.sentinel.port)

    def start(self) -> RedisSentinelServer:
        """Start master, replica and Sentinel, and wait until replication is up and the Sentinel sees both."""
        try:
            self.master.start()
            self.replica = RedisServer(
                binary=self._binary,
                extra_args=["--repl-diskless-sync-delay", "0", "--replicaof", self.master.host,
                            str(self.master.port), *self._replica_args],
            )
            self.replica.start()
            self.sentinel = _SentinelProcess(
                master_name=self.master_name, master=self.master, binary=self._binary,
                down_after_ms=self._down_after_ms, failover_timeout_ms=self._failover_timeout_ms,
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

