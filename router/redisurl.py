"""Redis URLs as router reads them: which schemes exist, what each must look like, and how to show one safely.

Pure parsing, no I/O, so both the registry (which checks ``redis.url`` when it loads) and the connection layer (which
connects) read a URL the same way. Schemes: ``redis://``, ``rediss://`` (TLS) and ``unix://`` for one server;
``redis+cluster://host:port`` (or ``rediss+cluster://``) for Redis Cluster;
``redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`` (or ``rediss+sentinel://``) for a master
found through Sentinel.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from router.quoting import quote

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = (*SINGLE_SCHEMES, *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
SENTINEL_USAGE = "use redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]"
_MAX_PORT = 65535


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return urlsplit(url).scheme.endswith("+cluster")


def is_sentinel_url(url: str) -> bool:
    """True for ``redis+sentinel://`` and ``rediss+sentinel://`` URLs."""
    return urlsplit(url).scheme.endswith("+sentinel")


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: the Sentinels, the master's name, db and credentials."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    ssl: bool


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a Sentinel URL; raises ValueError saying what the URL should look like."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    path = [p for p in parts.path.split("/") if p]
    shown = quote(redact(url), 200)
    if not hosts or not path:
        raise ValueError(f"invalid Sentinel URL {shown}: it names no master; {SENTINEL_USAGE}")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"invalid Sentinel URL {shown}: after the master name only a db number may follow; "
                         f"{SENTINEL_USAGE}")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or int(port) > _MAX_PORT:
            raise ValueError(f"invalid Sentinel address {quote(item, 100)} in {shown}: each Sentinel is host:port; "
                             f"{SENTINEL_USAGE}")
        sentinels.append((host.strip("[]"), int(port)))
    db = int(path[1]) if len(path) > 1 else 0
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SentinelTarget(tuple(sentinels), path[0], db, user, password, parts.scheme.startswith("rediss"))


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def url_problem(url: str) -> str | None:
    """Why router cannot connect to ``url`` (a message naming the fix), or None when its shape is right."""
    shown = quote(redact(url), 200)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"Redis URL {shown} is malformed ({exc}); use redis://host:6379/0"
    if parts.scheme not in SCHEMES:
        return (f"Redis URL {shown} must start with redis://, rediss:// (TLS) or unix:// (one server), "
                "redis+cluster:// or rediss+cluster:// (Redis Cluster), redis+sentinel:// or rediss+sentinel:// "
                "(Sentinel)")
    if parts.scheme in SENTINEL_SCHEMES:
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            return str(exc)
        return None
    if parts.scheme == "unix":
        return None if parts.path else f"Redis URL {shown} names no socket; use unix:///path/to/redis.sock"
    return _server_problem(parts, shown, cluster=parts.scheme in CLUSTER_SCHEMES)


def _server_problem(parts: SplitResult, shown: str, *, cluster: bool) -> str | None:
    example = f"{parts.scheme}://host:{7000 if cluster else 6379}{'' if cluster else '/0'}"
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if cluster and (port is None or port < 0 or not parts.hostname):
        return f"Redis Cluster URL {shown} must name a node as host:port (any node of the cluster); use {example}"
    if port is not None and port < 0:
        return f"Redis URL {shown} has an invalid port (a number from 1 to {_MAX_PORT}); use {example}"
    if not parts.hostname:
        return f"Redis URL {shown} has no host; use {example}"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"Redis URL {shown} has {quote(db, 40)} where the db number goes; use {example}"
    if cluster and db not in ("", "0"):
        return f"Redis Cluster has only db 0, but {shown} asks for db {db}; drop the /{db}"
    return None
