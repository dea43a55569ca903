"""Flushing aggregation groups: the members of a due group become one task of the ``into`` type.

A member task waits in its group (``Q:group:<member type>:<name>``) until the maintenance sweep reports the group
due (lua/maintain.lua: max size reached, grace passed since the last member, or max delay since the first). Then
a worker reads the oldest members, builds the aggregate's payload ``{"group": name, "items": [payloads]}`` and
hands both to lua/flush.lua, which swaps them in one step only if the group still starts with those members. So
two workers flushing at once, or a worker killed mid-flush, lose no member and aggregate none twice. A member
whose message cannot be read is archived as ``corrupt`` in the same step; a group whose member type no longer
aggregates (the registry changed) has its members archived as ``aggregate_undeclared``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from router.clock import Clock, to_ms
from router.errors import BrokerError
from router.registry.model import Registry
from router.storage import protocol
from router.storage.broker import SyncBroker
from router.storage.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
    encode,
    encode_new,
    encode_payload,
    undecodable,
)
from router.storage.keys import QueueKeys, split_group_id
from router.storage.taskids import new_task_id

log = structlog.get_logger(__name__)


class Aggregator:
    """Flushes the due groups of a worker's queues."""

    def __init__(self, registry: Registry, clock: Clock) -> None:
        self._registry = registry
        self._clock = clock

    def flush_due(self, broker: SyncBroker, due: Sequence[tuple[QueueKeys, str]]) -> int:
        """Flush each due (queue, group id); returns how many aggregate tasks were enqueued."""
        made = 0
        for qk, group_id in due:
            try:
                made += self.flush(broker, qk, group_id)
            except BrokerError as exc:  # Redis refused (a group list of the wrong type): the other groups go on
                log.warning("group_flush_refused", queue=qk.queue, group=group_id[:200], error=str(exc)[:500])
        return made

    def flush(self, broker: SyncBroker, qk: QueueKeys, group_id: str) -> int:
        """Flush one group (up to its max size); 1 when an aggregate task was enqueued."""
        try:
            member_type, name = split_group_id(group_id)
        except ValueError:  # maintain.lua drops ids that cannot name a group; one slipping through is skipped
            log.warning("group_id_invalid", queue=qk.queue, group=group_id[:200])
            return 0
        spec = self._registry.tasks.get(member_type)
        agg = spec.aggregate if spec is not None else None
        limit = agg.max_size if agg is not None else 100
        head = broker.group_head(qk, group_id, limit)
        now_ms = to_ms(self._clock())
        if not head:
            # A due group without members (its list was deleted): flushing nothing drops it from Q:groups, else
            # every sweep would report it due again.
            broker.run(protocol.flush(qk, protocol.Flush(group_id, [], "", b""), now_ms, 0, limit))
            return 0
        items: list[Any] = []
        archived: list[tuple[str, bytes]] = []
        for task_id, raw in head:
            if raw is None:
                # Its message is gone, so its payload cannot join the aggregate: archived as missing, not counted
                # as done (get_task would say completed for work that never ran).
                log.warning("group_member_missing", queue=qk.queue, group=group_id, task_id=task_id)
                why = f"member {task_id!r} of group {group_id!r} had no stored message when the group was flushed"
                archived.append((task_id, encode(Envelope(type="<missing>", payload={"group": group_id},
                                                          enqueued_at_ms=now_ms, reason="missing_message",
                                                          last_error=why))))
                continue
            try:
                env = decode(raw)
            except MalformedMessage as exc:
                archived.append((task_id, encode(undecodable(raw, "corrupt", str(exc), now_ms))))
                continue
            if agg is None or env.type != member_type:
                why = (f"task type {env.type!r} does not aggregate into this group (the registry changed?); "
                       "enqueue it again without group=") if agg is None else \
                    f"a {env.type!r} task in a group of {member_type!r}"
                archived.append((task_id, encode(Envelope(env.type, env.payload, env.enqueued_at_ms,
                                                          reason="aggregate_undeclared", last_error=why))))
                continue
            items.append(env.payload)
        members = [task_id for task_id, _ in head]
        task_id, envelope = "", b""
        if agg is not None and items:
            # Members are bounded by max_payload_bytes each; the whole must still fit one envelope.
            while True:
                envelope = encode_new(agg.into, encode_payload({"group": name, "items": items}), now_ms).encode()
                if len(envelope) <= MAX_ENVELOPE_BYTES or len(items) == 1:
                    break
                cut = len(items) // 2
                items, members = items[:cut], _first_with(members, head, archived, cut)
            task_id = new_task_id()
        rest_due_ms = to_ms(min(agg.grace_s, agg.max_delay_s)) if agg is not None else 0
        call = protocol.flush(qk, protocol.Flush(group_id, members, task_id, envelope,
                                                 [(m, e) for m, e in archived if m in members]),
                              now_ms, rest_due_ms, limit)
        if int(broker.run(call)) != 1:
            return 0  # another worker flushed it meanwhile
        for member, _ in archived:
            log.warning("group_member_archived", queue=qk.queue, group=group_id, task_id=member)
        if task_id:
            log.info("group_flushed", queue=qk.queue, group=group_id, task_id=task_id, type=agg.into if agg else "",
                     members=len(items))
            return 1
        return 0


def _first_with(members: list[str], head: list[tuple[str, bytes | None]], archived: list[tuple[str, bytes]],
                keep_items: int) -> list[str]:
    """The shortest prefix of ``members`` holding ``keep_items`` aggregated members (archived and missing ones
    in it are consumed too)."""
    skipped = {m for m, _ in archived}
    count = 0
    for i, m in enumerate(members):
        if m not in skipped:
            count += 1
            if count == keep_items:
                return members[: i + 1]
    return members

