"""The only module that sends commands to Redis: it executes protocol Calls and a few plain commands.

:class:`SyncBroker` and :class:`AsyncBroker` run the same :mod:`router.storage.protocol` calls over redis-py's sync and
asyncio clients. Scripts run by EVALSHA; after a Redis restart or failover empties the script cache, a NOSCRIPT
reply is answered by sending the script's source once (which caches it again).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis
from redis.exceptions import NoScriptError, ResponseError

from router.errors import BrokerError
from router.storage.connection import TRANSIENT_ERRORS, AsyncRedis, SyncRedis
from router.storage.keys import QueueKeys, ServiceKeys
from router.storage.protocol import Call
from router.task import TaskState


def _evalsha(call: Call) -> tuple[Any, ...]:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def _eval(call: Call) -> tuple[Any, ...]:
    return ("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)


def _check(reply: Any, call: Call | str) -> Any:
    if isinstance(reply, TRANSIENT_ERRORS):
        raise reply
    if isinstance(reply, ResponseError):
        what = f"script {call.script.name!r}" if isinstance(call, Call) else call
        raise BrokerError(f"Redis refused {what}: {reply}") from reply
    return reply


_BLPOP = "BLPOP on the wake lists"
#: After this long unused, the held connection is checked for a close by the server before it is used again.
IDLE_CHECK_S = 1.0


def _pack(conn: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """The wire bytes of ``commands``: hiredis packs str, bytes and numbers directly, skipping redis-py's
    per-argument conversions; anything else goes through redis-py's packer."""
    try:
        return [b"".join([hiredis.pack_command(c) for c in commands])]
    except TypeError:
        return conn.pack_commands(commands)


def _quiet(conn: Any) -> bool:
    """Whether an idle connection is still open with nothing unread, as redis-py's pool checks before reuse."""
    try:
        return not conn.can_read()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False


class _Line:
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
        return conn

    def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any] | None:
        """Replies in order (an error reply as its exception object), or None if another thread holds the line."""
        self._in_this_process()
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._usable()
            try:
                conn.send_packed_command(_pack(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as exc:  # the error reply was read whole: the connection is in step
                        replies.append(exc)
                return replies
            except BaseException:
                conn.disconnect()  # a half-read reply would be taken for the next call's: start afresh
                raise
            finally:
                self._last_used = time.monotonic()
        finally:
            self._lock.release()

    def interrupt(self) -> None:
        """From another thread: make a call blocked on the line fail at once (the socket is shut down, so Redis
        drops the client and never runs the commands queued behind a blocking one). The next call reconnects."""
        self._interrupted = True
        sock = getattr(self._conn, "_sock", None)  # redis-py keeps the socket private; only shutdown() is used
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Give the connection back to the pool."""
        self._in_this_process()
        with self._lock:
            if self._conn is not None:
                self._pool.release(self._conn)
            self._conn = None


class SyncBroker:
    """Executes calls on a sync redis-py client (single server or cluster)."""

    def __init__(self, client: SyncRedis) -> None:
        self.client = client
        # Cluster clients route each command to its slot's node, so they keep redis-py's own path.
        self._line = _Line(client) if isinstance(client, redis.Redis) else None

    def run(self, call: Call) -> Any:
        """Run one call and return its raw reply."""
        if self._line is not None:
            replies = self._line.execute([_evalsha(call)])
            if replies is not None:
                return self._settle_script_replies([call], replies)[0]
        try:
            return self.client.execute_command(*_evalsha(call))  # type: ignore[no-untyped-call]
        except NoScriptError:
            return self.client.execute_command(*_eval(call))  # type: ignore[no-untyped-call]
        except TRANSIENT_ERRORS:
            raise
        except ResponseError as exc:
            raise BrokerError(f"Redis refused script {call.script.name!r}: {exc}") from exc

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one round trip (a non-transactional pipeline); replies in order."""
        if len(calls) == 1:
            return [self.run(calls[0])]
        return self._settle_script_replies(calls, self._round_trip([_evalsha(c) for c in calls]))

    def _round_trip(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Replies to ``commands`` sent in one round trip (error replies as exception objects): over the line
        when it is free, else a redis-py pipeline (another thread holds the line, or a cluster client)."""
        replies = self._line.execute(commands) if self._line is not None else None
        if replies is None:
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(pipe.execute(raise_on_error=False))
        return replies

    def _settle_script_replies(self, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
        """Resend by source what the script cache lacked (after a restart or failover); raise refusals."""
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[i] = self.client.execute_command(*_eval(calls[i]))  # type: ignore[no-untyped-call]
            else:
                _check(reply, calls[i])
        return replies

    def ping(self) -> None:
        """Check that Redis answers (transient errors propagate; a refusal is a BrokerError)."""
        try:
            self.client.ping()
        except redis.exceptions.AuthenticationError as exc:
            raise BrokerError(f"Redis refused the credentials: {exc}; fix the URL's user/password") from exc
        except TRANSIENT_ERRORS:
            raise
        except ResponseError as exc:
            raise BrokerError(f"Redis refused PING: {exc}; grant the service's ACL user +ping") from exc

    def heartbeat(self, sk: ServiceKeys, worker_id: str, doc: str, now_ms: int, ttl_ms: int, prune: bool) -> None:
        """Publish a worker's heartbeat; with ``prune``, also drop expired entries from the service's index
        (readers filter by expiry anyway, so pruning now and then keeps an idle worker's command rate low)."""
        self._publish(sk.workers, sk.worker(worker_id), worker_id, doc, now_ms, ttl_ms, prune)

    def remove_worker(self, sk: ServiceKeys, worker_id: str) -> None:
        """Withdraw a worker's heartbeat at clean exit."""
        self._withdraw(sk.workers, sk.worker(worker_id), worker_id)

    def live_workers(self, sk: ServiceKeys, now_ms: int) -> list[bytes]:
        """Heartbeat documents of a service's live workers."""
        return self._live(sk.workers, sk.worker, now_ms)

    def scheduler_heartbeat(self, sk: ServiceKeys, scheduler_id: str, doc: str, now_ms: int, ttl_ms: int,
                            prune: bool) -> None:
        """Publish a cron scheduler's heartbeat under a service whose entries it fires (as :meth:`heartbeat`)."""
        self._publish(sk.schedulers, sk.scheduler(scheduler_id), scheduler_id, doc, now_ms, ttl_ms, prune)

    def remove_scheduler(self, sk: ServiceKeys, scheduler_id: str) -> None:
        """Withdraw a scheduler's heartbeat at clean exit."""
        self._withdraw(sk.schedulers, sk.scheduler(scheduler_id), scheduler_id)

    def live_schedulers(self, sk: ServiceKeys, now_ms: int) -> list[bytes]:
        """Heartbeat documents of the live schedulers firing a service's cron entries."""
        return self._live(sk.schedulers, sk.scheduler, now_ms)

    def cron_claims(self, keys: Sequence[str]) -> list[int | None]:
        """The claimed fire time (ms) held by each cron claim key, in one round trip (None: no claim, or not a
        number)."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        out: list[int | None] = []
        for raw in pipe.execute():
            try:
                out.append(int(raw) if raw is not None else None)
            except ValueError:
                out.append(None)
        return out

    def _publish(self, index: str, key: str, member: str, doc: str, now_ms: int, ttl_ms: int, prune: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, doc, px=ttl_ms)
        pipe.zadd(index, {member: now_ms + ttl_ms})
        if prune:
            pipe.zremrangebyscore(index, "-inf", now_ms)
        try:
            pipe.execute()
        except TRANSIENT_ERRORS:
            raise
        except ResponseError as exc:  # NOPERM and friends: the ACL user lacks a command or key pattern
            raise BrokerError(f"Redis refused the heartbeat: {exc}; check the service's ACL user") from exc

    def _withdraw(self, index: str, key: str, member: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(key)
        pipe.zrem(index, member)
        pipe.execute()

    def _live(self, index: str, key_of: Callable[[str], str], now_ms: int) -> list[bytes]:
        ids: list[bytes] = cast(list[bytes], self.client.zrangebyscore(index, now_ms, "+inf"))
        if not ids:
            return []
        docs = cast(list[bytes | None], self.client.mget([key_of(i.decode()) for i in ids]))
        return [d for d in docs if d is not None]

    def queue_sizes(self, queues: Sequence[QueueKeys]) -> list[dict[str, int]]:
        """Number of tasks in each state, per queue, in one round trip per slot."""
        pipe = self.client.pipeline(transaction=False)
        for qk in queues:
            for state in TaskState:
                key = qk.of_state(state)
                pipe.llen(key) if state is TaskState.PENDING else pipe.zcard(key)
        raw = pipe.execute()
        n = len(TaskState)
        return [{s.value: int(x) for s, x in zip(TaskState, raw[i * n : i * n + n])} for i in range(len(queues))]

    def paused(self, queues: Sequence[QueueKeys]) -> list[bool]:
        """Whether each queue is paused."""
        pipe = self.client.pipeline(transaction=False)
        for qk in queues:
            pipe.exists(qk.paused)
        return [bool(x) for x in pipe.execute()]

    def messages(self, qk: QueueKeys, task_ids: Sequence[str]) -> list[bytes | None]:
        """Stored envelopes of ``task_ids`` in one queue (None where absent)."""
        if not task_ids:
            return []
        return cast(list[bytes | None], self.client.hmget(qk.messages, list(task_ids)))

    def server_config(self, names: Sequence[str]) -> dict[str, str]:
        """``CONFIG GET`` of ``names`` (BrokerError when the ACL denies CONFIG)."""
        out: dict[str, str] = {}
        try:
            for name in names:
                raw = self.client.config_get(name)
                out.update({str(k): str(v) for k, v in dict(raw).items()})
        except ResponseError as exc:
            raise BrokerError(f"CONFIG GET refused: {exc}") from exc
        return out

    def wait_wake_then(self, keys: Sequence[str], timeout_s: float, calls: Sequence[Call]) -> tuple[bool, list[Any]]:
        """Block until one of the wake lists (all in one slot) has a token or the timeout passes, then run
        ``calls`` (same slot) at once in the same round trip: pipelined behind the blocking pop, Redis runs them
        the moment it returns. Returns whether a token came, and the calls' replies."""
        replies = self._round_trip([("BLPOP", *keys, timeout_s), *map(_evalsha, calls)])
        woke = _check(replies[0], _BLPOP) is not None
        return woke, self._settle_script_replies(calls, replies[1:])

    def interrupt(self) -> bool:
        """From another thread: end a blocking call now; False when this client cannot (a cluster client)."""
        if self._line is None:
            return False
        self._line.interrupt()
        return True

    def close(self) -> None:
        if self._line is not None:
            self._line.close()
        self.client.close()


class AsyncBroker:
    """Executes calls on an asyncio redis-py client."""

    def __init__(self, client: AsyncRedis) -> None:
        self.client = client

    async def run(self, call: Call) -> Any:
        """Run one call and return its raw reply."""
        try:
            return await self.client.execute_command(*_evalsha(call))
        except NoScriptError:
            return await self.client.execute_command(*_eval(call))
        except TRANSIENT_ERRORS:
            raise
        except ResponseError as exc:
            raise BrokerError(f"Redis refused script {call.script.name!r}: {exc}") from exc

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one round trip; replies in order."""
        if len(calls) == 1:
            return [await self.run(calls[0])]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*_evalsha(call))
        replies = list(await pipe.execute(raise_on_error=False))
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[i] = await self.client.execute_command(*_eval(calls[i]))
            else:
                _check(reply, calls[i])
        return replies

    async def live_workers(self, sk: ServiceKeys, now_ms: int) -> list[bytes]:
        """Heartbeat documents of a service's live workers."""
        ids = cast(list[bytes], await self.client.zrangebyscore(sk.workers, now_ms, "+inf"))
        if not ids:
            return []
        docs = cast(list[bytes | None], await self.client.mget([sk.worker(i.decode()) for i in ids]))
        return [d for d in docs if d is not None]

    async def close(self) -> None:
        await self.client.aclose()
