"""The held line: one connection taken out of a single server's pool for script calls, the hot path of every
producer and worker (redis-py spends about half of a small command's client time taking a connection from its pool
and giving it back). :class:`~router.storage.broker.SyncBroker` sends over it when it is free."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.exceptions import ResponseError

#: After this long unused, the held connection is checked for a close by the server before it is used again.
IDLE_CHECK_S = 1.0


def _pack(conn: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """The wire bytes of ``commands``: hiredis packs str, bytes and numbers directly, skipping redis-py's
    per-argument conversions; anything else goes through redis-py's packer."""
    try:
        return [b"".join([hiredis.pack_command(c) for c in commands])]
    except TypeError:
        return conn.pack_commands(commands)


def _time_left(deadline: float | None) -> dict[str, float]:
    """``read_response``'s timeout for a read that must end by ``deadline`` (none without one)."""
    if deadline is None:
        return {}
    left = deadline - time.monotonic()
    if left <= 0:
        raise redis.exceptions.TimeoutError("the shutdown deadline passed before Redis answered")
    return {"timeout": left}


def _quiet(conn: Any) -> bool:
    """Whether an idle connection is still open with nothing unread, as redis-py's pool checks before reuse."""
    try:
        return not conn.can_read()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False


class HeldLine:
    """One connection held out of a single server's pool for script calls, the hot path of every producer and
    worker: redis-py spends about half of a small command's client time taking a connection from its pool and
    giving it back. Only one thread uses the line at a time; a thread that finds it busy gets None and goes through
    the pool, so sharing a broker between threads stays safe.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()
        self._interrupted = False
        self._last_used = 0.0
        self._busy_since: float | None = None  # monotonic start of the call in progress

    def _in_this_process(self) -> None:
        # A forked child must not share its parent's socket, nor a lock some parent thread held at fork time.
        if self._pid != os.getpid():
            self._lock, self._conn, self._pid = threading.Lock(), None, os.getpid()

    def _usable(self) -> Any:
        """The held connection, replaced when it was interrupted and checked like the pool does after idling
        (a server timeout, a proxy or a restart may have closed it meanwhile)."""
        conn = self._conn
        if conn is not None and self._interrupted:
            conn.disconnect()
            self._interrupted = False
        elif conn is not None and time.monotonic() - self._last_used > IDLE_CHECK_S and not _quiet(conn):
            conn.disconnect()  # closed by the server, or stray data: reconnect on send
        if conn is None:
            conn = self._conn = self._pool.get_connection()
        elif getattr(conn, "_sock", None) is None:
            # Reconnect here, not by send's implicit reconnect: that one goes back to the address the connection
            # last had, while connect() of a Sentinel-managed connection asks the Sentinels for the master first
            # (after a failover the old address is a replica, or dead).
            conn.connect()
        return conn

    def execute(self, commands: Sequence[tuple[Any, ...]], deadline: float | None = None) -> list[Any] | None:
        """Replies in order (an error reply as its exception object), or None if another thread holds the line.

        With a ``deadline`` (monotonic), no read waits past it: a frozen server costs at most the time left.
        """
        self._in_this_process()
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._busy_since = time.monotonic()  # from here on (a reconnect included) a stop can cut the call short
            conn = self._usable()
            try:
                conn.send_packed_command(_pack(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response(**_time_left(deadline)))
                    except ResponseError as exc:  # the error reply was read whole: the connection is in step
                        replies.append(exc)
                return replies
            except BaseException:
                conn.disconnect()  # a half-read reply would be taken for the next call's: start afresh
                raise
            finally:
                self._last_used = time.monotonic()
        finally:
            self._busy_since = None
            self._lock.release()

    def interrupted(self) -> None:
        """Reconnect before the next call (the server answered, but is no longer the one to talk to)."""
        self._interrupted = True

    def interrupt(self) -> None:
        """From another thread: make a call blocked on the line fail at once (the socket is shut down, so Redis
        drops the client and never runs the commands queued behind a blocking one). The next call reconnects."""
        self._interrupted = True
        sock = getattr(self._conn, "_sock", None)  # redis-py keeps the socket private; only shutdown() is used
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def busy_for(self) -> float:
        """Seconds the call in progress has been waiting (0 when idle); safe from a signal handler."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def close(self) -> None:
        """Give the connection back to the pool."""
        self._in_this_process()
        with self._lock:
            if self._conn is not None:
                self._pool.release(self._conn)
            self._conn = None
