"""Shared fixtures: real, throwaway Redis servers (single, cluster, sentinel) on free loopback ports.

Nothing here ever talks to a Redis the test run did not start (6379 included). With ``ROUTER_TEST_DOCKER=1``
the single server comes from testcontainers instead; the restart, cluster and sentinel fixtures still need a
local ``redis-server`` (see ``router.testing.find_redis_server``) and skip without one in that mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest
import redis
from enginekit import raw_client, router_url
from ledger import Ledger
from redis.cluster import RedisCluster

from router.errors import LocalRedisError
from router.testing import (
    RedisClusterServer,
    RedisSentinelServer,
    RedisServer,
    find_redis_server,
    reap_orphans,
)

DOCKER_ENV = "ROUTER_TEST_DOCKER"
DOCKER_IMAGE_ENV = "ROUTER_TEST_DOCKER_IMAGE"


def _use_docker() -> bool:
    return os.environ.get(DOCKER_ENV, "").strip() == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sentinel: tests that start a master, a replica and a Sentinel")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Servers and directories left by an earlier run that was killed outright.
    reap_orphans()


class ServerLike(Protocol):
    """What tests may rely on from ``redis_server`` in both modes."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


class ContainerRedis:
    """A Redis in a Docker container via testcontainers, shaped like ``RedisServer`` (no pid, no restart)."""

    def __init__(self, image: str) -> None:
        from testcontainers.redis import RedisContainer  # noqa: PLC0415 - optional, Docker mode only

        self._container = RedisContainer(image)
        self._started = False
        self.host = ""
        self.port = 0

    def start(self) -> ContainerRedis:
        self._container.start()  # waits until redis-cli ping answers inside the container
        self._started = True
        self.host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(6379))
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._container.stop()


def _require_local_binary() -> None:
    """In Docker mode a missing local binary skips; otherwise it fails loudly (via start())."""
    if _use_docker():
        try:
            find_redis_server()
        except LocalRedisError as exc:
            pytest.skip(f"{DOCKER_ENV}=1 and no local redis-server for this fixture: {exc}")


class RedisTarget(NamedTuple):
    """What ``any_redis_url`` yields: a URL and whether it points at a cluster."""

    url: str
    is_cluster: bool

    def client(self, **kwargs: Any) -> redis.Redis | RedisCluster:
        """A client of the right kind for ``url``; the caller closes it."""
        if self.is_cluster:
            return RedisCluster.from_url(self.url, **kwargs)
        return redis.Redis.from_url(self.url, **kwargs)


# --- single server ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> ServerLike:
    """One Redis for the whole session (a local ``RedisServer``, or a container in Docker mode)."""
    server: RedisServer | ContainerRedis = (
        ContainerRedis(os.environ.get(DOCKER_IMAGE_ENV, "redis:7")) if _use_docker() else RedisServer()
    )
    request.addfinalizer(server.stop)
    server.start()
    return server


def _flushall(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def redis_url(redis_server: ServerLike) -> str:
    """The session server's URL, after FLUSHALL, so each test starts on an empty Redis."""
    _flushall(redis_server.url)
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` (bytes replies) on the flushed session server, closed at teardown."""
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fresh_redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """A private ``RedisServer`` with ``appendonly yes``, for tests that restart, kill or pause it."""
    _require_local_binary()
    server = RedisServer(appendonly=True)
    request.addfinalizer(server.stop)
    server.start()
    return server


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """The chaos tests' ledger (tests/ledger.py): producer acks in this process, handler records in files."""
    return Ledger(tmp_path / "ledger")


# --- cluster and sentinel -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> RedisClusterServer:
    """A three-master Redis Cluster for the session (started on first use, about two seconds)."""
    _require_local_binary()
    cluster = RedisClusterServer()
    request.addfinalizer(cluster.stop)
    cluster.start()
    return cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServer) -> str:
    """The session cluster's URL (first node, for ``RedisCluster.from_url``), every master flushed."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel(request: pytest.FixtureRequest) -> RedisSentinelServer:
    """A master, a replica and a Sentinel for the session; see ``sentinel_address`` and ``master_name``."""
    _require_local_binary()
    trio = RedisSentinelServer()
    request.addfinalizer(trio.stop)
    trio.start()
    return trio


@pytest.fixture(params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def any_redis_url(request: pytest.FixtureRequest) -> RedisTarget:
    """Runs the test once on the single server and once on the cluster, each flushed first."""
    if request.param == "cluster":
        return RedisTarget(request.getfixturevalue("cluster_url"), is_cluster=True)
    return RedisTarget(request.getfixturevalue("redis_url"), is_cluster=False)


@pytest.fixture
def target(any_redis_url: RedisTarget) -> Iterator[tuple[str, Any]]:
    """(router URL, raw client) for engine tests that run on both the single server and the cluster."""
    url = router_url(any_redis_url.url, any_redis_url.is_cluster)
    client = raw_client(url)
    yield url, client
    client.close()
