"""When a cron entry fires, as instants: croniter's wall-clock matches mapped through the entry's IANA time zone,
with one documented rule for the spring gap and one for the autumn overlap. Pure: no I/O and no clock.

Times are whole seconds since the epoch (cron has no finer grain). croniter only ever sees naive wall-clock times,
so its own DST handling plays no part; the mapping to instants is done here, span by span of constant UTC offset.

The DST rules (docs/scheduler.md says why):

* An entry whose hour field is ``*`` (every hour: ``*/15 * * * *``, ``* * * * * *``, ``@hourly``) runs on
  **elapsed time**. Wall times inside the spring gap do not exist, so nothing fires for them; wall times inside the
  autumn overlap happen twice, and fire twice. Either way the entry keeps firing every N minutes of real time.
* An entry that names its hours (``30 2 * * *``, ``@daily``, ``0 9-17 * * 1-5``) fires **once per matching wall
  time**. A wall time inside the spring gap fires once, at the end of the gap (the first instant that exists after
  it: 03:00 when clocks jump from 02:00 to 03:00); a wall time inside the autumn overlap fires at its first
  occurrence only.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError

#: How far apart UTC-offset probes are when looking for DST transitions. No zone changes its offset twice within
#: six hours, so a probe pair with equal offsets has no transition between them.
PROBE_S = 6 * 3600
#: How far ahead :meth:`CronSchedule.next_after` looks, widening step by step: most entries fire within two days,
#: a yearly one within a year, ``0 0 29 2 *`` within eight years (2096 to 2104 has no 29 February).
NEXT_HORIZONS_S = (2 * 86400, 64 * 86400, 400 * 86400, 9 * 366 * 86400)
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class _Span:
    """Seconds ``start``..``end`` (inclusive) during which the zone's UTC offset is ``offset``; ``before`` is the
    offset of the second before ``start`` (different only when ``start`` is a transition)."""

    start: int
    end: int
    offset: int
    before: int


def _wall(seconds: int) -> datetime:
    """A wall-clock second count as the naive datetime croniter reads."""
    return _EPOCH + timedelta(seconds=seconds)


def _seconds(wall: datetime) -> int:
    return calendar.timegm(wall.timetuple())


class CronSchedule:
    """The fire instants of one cron spec in one time zone."""

    def __init__(self, spec: str, tz: str) -> None:
        """Raises ValueError (croniter's) for a spec croniter cannot read, ZoneInfoNotFoundError for a bad zone;
        the registry refuses both at load, so the scheduler never meets them."""
        self.spec = spec
        self.tz = ZoneInfo(tz)
        hours = croniter(spec, _EPOCH).expanded[1]
        #: True when every hour matches: the entry runs on elapsed time across DST changes (see the module doc).
        self.every_hour = hours == ["*"] or len(set(hours)) >= 24

    # -- instants ---------------------------------------------------------------------------------------------------
    def fires(self, after: int, until: int, limit: int, newest: bool = True) -> list[int]:
        """Fire instants in ``(after, until]``, ascending: the newest ``limit`` of them (the oldest with
        ``newest=False``)."""
        if until <= after or limit <= 0:
            return []
        spans = self._spans(after + 1, until)
        found: list[int] = []
        for span in reversed(spans) if newest else spans:
            for instant in self._span_fires(span, newest):
                if not found or instant != found[-1]:  # a gap fire can coincide with the first wall match
                    found.append(instant)
                if len(found) == limit:
                    return sorted(found)
        return sorted(found)

    def next_after(self, after: int) -> int | None:
        """The first fire instant after ``after``, or None if there is none within about nine years."""
        for horizon in NEXT_HORIZONS_S:
            found = self.fires(after, after + horizon, 1, newest=False)
            if found:
                return found[0]
        return None

    def latest(self, at: int, horizon_s: int) -> int | None:
        """The last fire instant at or before ``at``, looking back at most ``horizon_s``."""
        found = self.fires(at - horizon_s, at, 1)
        return found[0] if found else None

    # -- one span of constant offset --------------------------------------------------------------------------------
    def _span_fires(self, span: _Span, newest: bool) -> Iterator[int]:
        """The instants of one span, in the requested order, the DST rules applied."""
        gap = self._gap_fire(span)
        if gap is not None and not newest:
            yield gap
        for wall in self._walls(span.start + span.offset, span.end + span.offset, newest):
            instant = wall - span.offset
            if not self.every_hour and self._repeat(wall, instant):
                continue  # the autumn overlap's second pass: a named hour fires at its first occurrence only
            yield instant
        if gap is not None and newest:
            yield gap

    def _gap_fire(self, span: _Span) -> int | None:
        """The instant a named-hour entry fires for wall times skipped by a spring transition at ``span.start``."""
        if self.every_hour or span.offset <= span.before:
            return None
        skipped_from, skipped_to = span.start + span.before, span.start + span.offset - 1
        return span.start if next(self._walls(skipped_from, skipped_to, False), None) is not None else None

    def _repeat(self, wall: int, instant: int) -> bool:
        """Whether ``wall`` happened earlier too, at another instant than ``instant`` (PEP 495: fold=0 is the
        earlier of two occurrences)."""
        first = int(_wall(wall).replace(tzinfo=self.tz, fold=0).timestamp())
        return first < instant

    def _walls(self, lo: int, hi: int, newest: bool) -> Iterator[int]:
        """croniter's matches among the wall-clock seconds ``lo``..``hi``, ascending (descending when newest)."""
        if hi < lo:
            return
        it = croniter(self.spec, _wall(hi + 1 if newest else lo - 1))
        while True:
            try:
                wall = _seconds(it.get_prev(datetime) if newest else it.get_next(datetime))
            except CroniterBadDateError:  # no match for decades: a spec like "0 0 31 2 *" (the registry refuses it)
                return
            if wall < lo or wall > hi:
                return
            yield wall

    # -- the zone's offsets -----------------------------------------------------------------------------------------
    def _offset(self, instant: int) -> int:
        off = datetime.fromtimestamp(instant, timezone.utc).astimezone(self.tz).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    def _spans(self, lo: int, hi: int) -> list[_Span]:
        """Seconds ``lo``..``hi`` cut into spans of constant UTC offset."""
        spans: list[_Span] = []
        start, before, offset = lo, self._offset(lo - 1), self._offset(lo)
        while True:
            change = self._next_change(start, offset, hi)
            if change is None:
                spans.append(_Span(start, hi, offset, before))
                return spans
            spans.append(_Span(start, change - 1, offset, before))
            start, before, offset = change, offset, self._offset(change)

    def _next_change(self, start: int, offset: int, hi: int) -> int | None:
        """The first second in ``(start, hi]`` whose offset differs from ``offset`` (the offset at ``start``)."""
        t = start
        while t < hi:
            probe = min(t + PROBE_S, hi)
            if self._offset(probe) != offset:
                same, other = t, probe  # bisect: the offset is ``offset`` at ``same`` and differs at ``other``
                while other - same > 1:
                    mid = (same + other) // 2
                    if self._offset(mid) == offset:
                        same = mid
                    else:
                        other = mid
                return other
            t = probe
        return None
