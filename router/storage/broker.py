"""The only module that sends commands to Redis: it executes protocol Calls and a few plain commands.

:class:`SyncBroker` and :class:`AsyncBroker` run the same :mod:`router.storage.protocol` calls over redis-py's sync and
asyncio clients. Scripts run by EVALSHA; after a Redis restart or failover empties the script cache, a NOSCRIPT
reply is answered by sending the script's source once (which caches it again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from router.errors import BrokerError
from router.storage.connection import TRANSIENT_ERRORS, AsyncRedis, FailoverRefusal, SyncRedis, failover_refusal
from router.storage.keys import QueueKeys, ServiceKeys
from router.storage.line import HeldLine
from router.storage.protocol import Call, wire
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
        raise _refused(reply, what) from reply
    return reply


_BLPOP = "BLPOP on the wake lists"
def _refused(exc: ResponseError, what: str) -> BrokerError | FailoverRefusal:
    """A BrokerError for a command Redis refused (an ACL denial, out of memory, a script error), naming the fix;
    a refusal a failover heals (READONLY, NOREPLICAS, inside a script too) stays transient."""
    failover = failover_refusal(exc)
    if failover is not None:
        return failover
    text = str(exc)
    denied = isinstance(exc, redis.exceptions.NoPermissionError) or "can't run this command" in text \
        or "no permissions" in text  # inside a script, an ACL denial is a script error
    hint = "; grant the service's ACL user that command and key pattern (docs/operations.md lists them)" \
        if denied else ""
    return BrokerError(f"Redis refused {what}: {exc}{hint}")


@contextlib.contextmanager
def _refusals(what: str) -> Iterator[None]:
    """Turn a refusal by Redis into a BrokerError naming ``what``; transient errors pass through unchanged."""
    try:
        yield
    except TRANSIENT_ERRORS:
        raise
    except ResponseError as exc:
        raise _refused(exc, what) from exc


class SyncBroker:
    """Executes calls on a sync redis-py client (single server or cluster).

    Whatever Redis refuses (an ACL denial, out of memory, a script error) surfaces as a
    :class:`~router.errors.BrokerError` naming what was refused; transient errors (connection lost, timeout,
    failover in progress) propagate as redis-py raises them, for the caller to wait out or retry.
    """

    def __init__(self, client: SyncRedis) -> None:
        self.client = client
        # Cluster clients route each command to its slot's node, so they keep redis-py's own path.
        self._line = HeldLine(client) if isinstance(client, redis.Redis) else None
        #: While set (monotonic), calls over the held line never wait past it (a stopping worker's bound).
        self.deadline: float | None = None

    def run(self, call: Call) -> Any:
        """Run one call and return its raw reply."""
        return self.run_many([call])[0]

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one round trip (a non-transactional pipeline); replies in order; raise the first error."""
        replies = self.run_each(calls)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def run_each(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one round trip and settle each on its own reply: a call that failed is its exception
        object (transient as redis-py raised it, a refusal as a BrokerError); the others are their replies.
        Raises only when the round trip itself failed (connection lost, timeout)."""
        replies = self._round_trip([_evalsha(c) for c in calls])
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[i] = self._by_source(calls[i])
            elif isinstance(reply, ResponseError) and not isinstance(reply, TRANSIENT_ERRORS):
                replies[i] = _refused(reply, f"script {calls[i].script.name!r}")
        return replies

    def _by_source(self, call: Call) -> Any:
        """The reply to ``call`` sent with its source (the script cache was empty: a restart or failover)."""
        try:
            return self.client.execute_command(*_eval(call))  # type: ignore[no-untyped-call]
        except TRANSIENT_ERRORS as exc:
            return exc
        except ResponseError as exc:
            return _refused(exc, f"script {call.script.name!r}")

    def _round_trip(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Replies to ``commands`` sent in one round trip (error replies as exception objects): over the line
        when it is free, else a redis-py pipeline (another thread holds the line, or a cluster client)."""
        try:
            replies = self._line.execute(commands, self.deadline) if self._line is not None else None
            if replies is None:
                pipe = self.client.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)
                replies = list(pipe.execute(raise_on_error=False))
        except TRANSIENT_ERRORS:
            raise
        except ResponseError as exc:  # raised before any reply: the health check's PING, or AUTH
            raise _refused(exc, "the connection's health check") from exc
        if any(isinstance(r, ResponseError) and failover_refusal(r) is not None for r in replies):
            self._drop_connections()
        return replies

    def _drop_connections(self) -> None:
        """After a failover refusal: this client's connections go to a server that is no longer a usable master,
        so every one reconnects before its next call (through the Sentinels for a Sentinel URL)."""
        if self._line is not None:
            self._line.interrupted()
        if isinstance(self.client, redis.Redis):
            self.client.connection_pool.disconnect()

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
        replies = self._plain([("GET", key) for key in keys], "reading the cron claims")
        out: list[int | None] = []
        for raw in replies:
            try:
                out.append(int(raw) if raw is not None else None)
            except ValueError:
                out.append(None)
        return out

    def _publish(self, index: str, key: str, member: str, doc: str, now_ms: int, ttl_ms: int, prune: bool) -> None:
        commands: list[tuple[Any, ...]] = [("SET", key, doc, "PX", ttl_ms), ("ZADD", index, now_ms + ttl_ms, member)]
        if prune:
            commands.append(("ZREMRANGEBYSCORE", index, "-inf", now_ms))
        self._plain(commands, "the heartbeat")

    def _withdraw(self, index: str, key: str, member: str) -> None:
        self._plain([("DEL", key), ("ZREM", index, member)], "the heartbeat's removal")

    def _live(self, index: str, key_of: Callable[[str], str], now_ms: int) -> list[bytes]:
        with _refusals("reading the heartbeats"):
            ids: list[bytes] = cast(list[bytes], self.client.zrangebyscore(index, now_ms, "+inf"))
            if not ids:
                return []
            docs = cast(list[bytes | None], self.client.mget([key_of(i.decode()) for i in ids]))
        return [d for d in docs if d is not None]

    def _plain(self, commands: Sequence[tuple[Any, ...]], what: str) -> list[Any]:
        """Plain commands in one round trip (over the held line, so a stopping worker's deadline bounds them);
        the first error raised, a refusal as a BrokerError naming ``what``."""
        replies = self._round_trip(commands)
        for reply in replies:
            _check(reply, what)
        return replies

    def queue_sizes(self, queues: Sequence[QueueKeys]) -> list[dict[str, int]]:
        """Number of tasks in each state, per queue, in one round trip per slot."""
        pipe = self.client.pipeline(transaction=False)
        for qk in queues:
            for state in TaskState:
                if state is TaskState.PENDING:
                    pipe.llen(qk.pending)
                elif state is TaskState.AGGREGATING:  # one list per group: the enqueue and flush keep a count
                    pipe.hget(qk.stats, "aggregating")
                else:
                    pipe.zcard(qk.of_state(state))
        with _refusals("reading queue sizes"):
            raw = pipe.execute()
        n = len(TaskState)
        return [{s.value: int(x or 0) for s, x in zip(TaskState, raw[i * n : i * n + n])} for i in range(len(queues))]

    def paused(self, queues: Sequence[QueueKeys]) -> list[bool]:
        """Whether each queue is paused."""
        pipe = self.client.pipeline(transaction=False)
        for qk in queues:
            pipe.exists(qk.paused)
        with _refusals("reading the paused flags"):
            return [bool(x) for x in pipe.execute()]

    def quarantined(self, qk: QueueKeys, limit: int) -> list[bytes]:
        """The first ``limit`` entries waiting in a queue's quarantine."""
        with _refusals("reading the quarantine"):
            return cast(list[bytes], self.client.lrange(qk.quarantine, 0, limit - 1))

    def messages(self, qk: QueueKeys, task_ids: Sequence[str]) -> list[bytes | None]:
        """Stored envelopes of ``task_ids`` in one queue (None where absent)."""
        if not task_ids:
            return []
        with _refusals("reading messages"):
            return cast(list[bytes | None], self.client.hmget(qk.messages, [wire(t) for t in task_ids]))

    def group_head(self, qk: QueueKeys, group_id: str, limit: int) -> list[tuple[str, bytes | None]]:
        """The first ``limit`` members of an aggregation group, oldest first, with their stored envelopes (None
        where a message is missing)."""
        ids = self._plain([("LRANGE", qk.group(group_id), 0, limit - 1)], "reading an aggregation group")[0]
        if not ids:
            return []
        envs = self._plain([("HMGET", qk.messages, *ids)], "reading an aggregation group's messages")[0]
        return [(i.decode("utf-8", "surrogateescape"), e) for i, e in zip(ids, envs)]

    def cancel_requests(self, running: Mapping[QueueKeys, Sequence[str]]) -> list[tuple[QueueKeys, str]]:
        """Which of the ``running`` task ids (per queue) someone asked to cancel, in one round trip."""
        queues = [qk for qk, ids in running.items() if ids]
        if not queues:
            return []
        commands = [("HMGET", qk.cancel_requests, *(wire(i) for i in running[qk])) for qk in queues]
        replies = self._plain(commands, "reading the cancel requests")
        return [(qk, task_id) for qk, reply in zip(queues, replies)
                for task_id, asked in zip(running[qk], reply) if asked is not None]

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

    def wait_wake_then(self, keys: Sequence[str], timeout_s: float, calls: Sequence[Call]) -> tuple[Any, list[Any]]:
        """Block until one of the wake lists (all in one slot) has a token or the timeout passes, then run
        ``calls`` (same slot) at once in the same round trip: pipelined behind the blocking pop, Redis runs them
        the moment it returns.

        Returns whether a token came (or the pop's own error, as an exception object), and each call's reply (an
        exception object for a call that failed, as :meth:`run_each` settles them): the calls run even when the
        pop is refused, so what they leased must still be taken in or handed back."""
        replies = self._round_trip([("BLPOP", *keys, timeout_s), *map(_evalsha, calls)])
        pop = replies[0]
        if isinstance(pop, ResponseError) and not isinstance(pop, TRANSIENT_ERRORS):
            pop = _refused(pop, _BLPOP)
        woke: Any = pop if isinstance(pop, Exception) else pop is not None
        settled = replies[1:]
        for i, reply in enumerate(settled):
            if isinstance(reply, NoScriptError):
                settled[i] = self._by_source(calls[i])
            elif isinstance(reply, ResponseError) and not isinstance(reply, TRANSIENT_ERRORS):
                settled[i] = _refused(reply, f"script {calls[i].script.name!r}")
        return woke, settled

    def interrupt_if_stuck(self, after_s: float) -> None:
        """End the call in progress if it has waited more than ``after_s`` (a frozen Redis); a healthy round trip
        takes milliseconds and is never cut. Takes no lock, so a signal handler may call it."""
        if self._line is not None and self._line.busy_for() > after_s:
            self._line.interrupt()

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
    """Executes calls on an asyncio redis-py client, with :class:`SyncBroker`'s error rules."""

    def __init__(self, client: AsyncRedis) -> None:
        self.client = client

    async def run(self, call: Call) -> Any:
        """Run one call and return its raw reply."""
        return (await self.run_many([call]))[0]

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one round trip; replies in order; raise the first error."""
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*_evalsha(call))
        with _refusals("the connection's health check"):
            replies = list(await pipe.execute(raise_on_error=False))
        failover = any(isinstance(r, ResponseError) and failover_refusal(r) is not None for r in replies)
        if failover and isinstance(self.client, redis.asyncio.Redis):
            await self.client.connection_pool.disconnect()  # see SyncBroker._drop_connections
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                with _refusals(f"script {calls[i].script.name!r}"):
                    replies[i] = await self.client.execute_command(*_eval(calls[i]))
            else:
                _check(reply, calls[i])
        return replies

    async def live_workers(self, sk: ServiceKeys, now_ms: int) -> list[bytes]:
        """Heartbeat documents of a service's live workers."""
        with _refusals("reading the worker heartbeats"):
            ids = cast(list[bytes], await self.client.zrangebyscore(sk.workers, now_ms, "+inf"))
            if not ids:
                return []
            docs = cast(list[bytes | None], await self.client.mget([sk.worker(i.decode()) for i in ids]))
        return [d for d in docs if d is not None]

    async def close(self) -> None:
        await self.client.aclose()
