"""``redis.url`` in the registry accepts every scheme the connection layer supports (single server, TLS, Unix socket,
Cluster, Sentinel, with or without TLS), checks each one's shape, and says how to fix a malformed one."""

from __future__ import annotations

from pathlib import Path

import pytest
from regkit import only, problems, write

import router
from router.redisurl import parse_sentinel_url


def registry_with_url(base: Path, url: str) -> Path:
    return write(base, "services.yaml", f"version: 1\nredis:\n  url: '{url}'\n")


@pytest.mark.parametrize("url", [
    "redis://localhost:6379/0",
    "rediss://user:pw@cache.example:6380/2",
    "unix:///var/run/redis.sock",
    "redis+cluster://node1:7000",
    "rediss+cluster://user:pw@node1:7000",
    "redis+sentinel://s1:26379/mymaster",
    "redis+sentinel://user:pw@s1:26379,s2:26380,[::1]:26381/mymaster/3",
    "rediss+sentinel://s1:26379/mymaster",
])
def test_every_supported_scheme_loads(tmp_path: Path, url: str) -> None:
    """Regression (issue 8): ``redis+cluster://`` and ``redis+sentinel://`` were refused by router.load."""
    registry = router.load(registry_with_url(tmp_path, url), env={})
    assert registry.redis_url == url
    if "sentinel" in url:  # the registry and the connection layer read the URL the same way
        assert parse_sentinel_url(url).master == "mymaster"


@pytest.mark.parametrize(("url", "says"), [
    ("http://localhost:6379", "redis+cluster://"),
    ("redis+cluster://", "host:port"),
    ("redis+cluster://node1", "host:port"),
    ("redis+cluster://node1:port", "host:port"),
    ("redis+sentinel://s1:26379", "master"),
    ("redis+sentinel://s1/mymaster", "host:port"),
    ("redis+sentinel://s1:26379,:1/mymaster", "host:port"),
    ("redis+sentinel://s1:26379/mymaster/db0", "db"),
    ("redis://", "no host"),
    ("redis://host:99999/0", "port"),
])
def test_malformed_urls_are_located_problems_naming_the_shape(tmp_path: Path, url: str, says: str) -> None:
    """Each scheme's shape is checked: cluster needs host:port; Sentinel host:port[,host:port...]/master[/db]."""
    problem = only(problems(registry_with_url(tmp_path, url)), "redis-url")
    assert (problem.line, problem.column) == (3, 8)
    assert says in problem.message, problem.message


def test_a_password_is_not_echoed(tmp_path: Path) -> None:
    """A malformed URL is quoted with its password replaced."""
    problem = only(problems(registry_with_url(tmp_path, "redis+sentinel://u:s3cret@s1:26379")), "redis-url")
    assert "s3cret" not in problem.message and "***" in problem.message
