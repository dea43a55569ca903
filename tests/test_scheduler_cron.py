"""Cron fire times as instants (no Redis, no clock): both DST transitions in Europe/Paris and America/New_York, the
six-field seconds-last form, far next fires, and the catch-up policies choosing among missed slots."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from router.registry.cronspecs import spec_problem
from router.registry.model import CatchUp
from router.scheduler.catchup import plan
from router.scheduler.cron import CronSchedule
from router.scheduler.entries import cron_task_id


def at(iso: str) -> int:
    """Seconds since the epoch of an ISO time with its offset (``2024-03-31T01:00:00+00:00``)."""
    return int(datetime.fromisoformat(iso).timestamp())


def local(instants: list[int], tz: str) -> list[str]:
    """Instants as local ISO times with their offsets, for readable assertions."""
    return [datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat() for t in instants]


# (zone, the day before the spring change, the spring change instant, the autumn change instant)
PARIS = ("Europe/Paris", "2024-03-31T01:00:00+00:00", "2024-10-27T01:00:00+00:00")
NEW_YORK = ("America/New_York", "2024-03-10T07:00:00+00:00", "2024-11-03T06:00:00+00:00")


def test_named_hour_in_the_spring_gap_fires_once_at_the_end_of_the_gap_in_paris() -> None:
    """02:30 does not exist on 31 March 2024 in Paris (02:00 -> 03:00): the daily 02:30 entry fires at 03:00."""
    schedule = CronSchedule("30 2 * * *", "Europe/Paris")
    fires = schedule.fires(at("2024-03-29T12:00:00+00:00"), at("2024-04-02T12:00:00+00:00"), 100)
    assert local(fires, "Europe/Paris") == [
        "2024-03-30T02:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00"]
    assert fires[1] == at(PARIS[1])  # exactly the transition instant, the first that exists after the gap


def test_named_hour_in_the_spring_gap_fires_once_at_the_end_of_the_gap_in_new_york() -> None:
    """02:00-02:59 do not exist on 10 March 2024 in New York; every named slot in the gap collapses into one fire
    at 03:00, which the 03:00 slot of the same entry shares (one fire, not two)."""
    schedule = CronSchedule("*/20 2,3 * * *", "America/New_York")
    fires = schedule.fires(at("2024-03-10T05:00:00+00:00"), at("2024-03-10T09:00:00+00:00"), 100)
    assert local(fires, "America/New_York") == [
        "2024-03-10T03:00:00-04:00", "2024-03-10T03:20:00-04:00", "2024-03-10T03:40:00-04:00"]
    daily = CronSchedule("30 2 * * *", "America/New_York")
    assert local(daily.fires(at("2024-03-09T00:00:00+00:00"), at("2024-03-12T00:00:00+00:00"), 9),
                 "America/New_York") == ["2024-03-09T02:30:00-05:00", "2024-03-10T03:00:00-04:00",
                                         "2024-03-11T02:30:00-04:00"]


@pytest.mark.parametrize(("tz", "spec", "first", "second_pass"), [
    ("Europe/Paris", "30 2 * * *", "2024-10-27T02:30:00+02:00", "2024-10-27T01:30:00+00:00"),
    ("America/New_York", "30 1 * * *", "2024-11-03T01:30:00-04:00", "2024-11-03T06:30:00+00:00"),
])
def test_named_hour_in_the_autumn_overlap_fires_at_its_first_occurrence_only(
        tz: str, spec: str, first: str, second_pass: str) -> None:
    """The wall time happens twice; the daily entry fires once, at the first occurrence (summer time)."""
    schedule = CronSchedule(spec, tz)
    day = at(first)
    fires = schedule.fires(day - 86400 - 1, day + 86400 + 3600, 100)
    assert local(fires, tz)[1] == first and len(fires) == 3  # the day before, the change day once, the day after
    assert fires[2] - fires[1] == 86400 + 3600  # the next day's slot: 25 hours later, the change day had 25 hours
    # A tick that sees only the second pass (the first was handled by an earlier tick) fires nothing.
    assert schedule.fires(at(second_pass) - 600, at(second_pass) + 600, 10) == []


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK], ids=["Europe/Paris", "America/New_York"])
@pytest.mark.parametrize("spec", ["*/30 * * * *", "0 * * * *", "*/10 * * * * 0"])
def test_every_hour_entries_run_on_elapsed_time_across_both_changes(zone: tuple[str, str, str], spec: str) -> None:
    """An entry firing every hour keeps a constant real-time period: nothing for the gap's nonexistent wall times,
    both passes of the overlap, no extra fire at either change."""
    tz, spring, autumn = zone
    schedule = CronSchedule(spec, tz)
    for change in (at(spring), at(autumn)):
        fires = schedule.fires(change - 4 * 3600, change + 4 * 3600, 1000)
        steps = {b - a for a, b in itertools.pairwise(fires)}
        assert len(steps) == 1, local(fires, tz)
        assert len(fires) == 8 * 3600 // steps.pop()
    overlap = schedule.fires(at(autumn) - 3600 - 1, at(autumn) + 3600, 1000)  # both passes of the repeated hour
    walls = [t[11:16] for t in local(overlap, tz)]
    assert len(walls) != len(set(walls))  # the same wall times fired twice, once per pass


def test_six_field_specs_read_the_seconds_last() -> None:
    """croniter's sixth field is the seconds: '* * * * * */15' fires four times a minute."""
    every_15 = CronSchedule("* * * * * */15", "UTC")
    start = at("2024-01-01T00:00:00+00:00")
    assert [t - start for t in every_15.fires(start, start + 60, 100)] == [15, 30, 45, 60]
    minute_5 = CronSchedule("*/5 * * * * 30", "UTC")  # second 30 of every fifth minute
    assert [t - start for t in minute_5.fires(start, start + 600, 100)] == [30, 330]


def test_newest_and_oldest_limits_agree_with_the_whole_range() -> None:
    """fires(limit) keeps the newest (or, with newest=False, the oldest) slots of the range, ascending."""
    schedule = CronSchedule("*/7 * * * *", "Europe/Paris")
    lo, hi = at(PARIS[2]) - 5 * 3600, at(PARIS[2]) + 5 * 3600
    everything = schedule.fires(lo, hi, 10_000)
    assert everything == sorted(everything) and len(everything) > 80
    assert schedule.fires(lo, hi, 5) == everything[-5:]
    assert schedule.fires(lo, hi, 5, newest=False) == everything[:5]
    assert schedule.fires(everything[3], everything[6], 10) == everything[4:7]  # (after, until]
    assert schedule.latest(everything[6], 3600) == everything[6]
    assert schedule.next_after(everything[6]) == everything[7]


def test_next_fire_looks_years_ahead_and_none_for_a_spec_that_never_fires() -> None:
    """29 February: after 2096 the next is 2104 (2100 is no leap year); 31 February never comes."""
    leap = CronSchedule("0 0 29 2 *", "UTC")
    assert leap.next_after(at("2096-03-01T00:00:00+00:00")) == at("2104-02-29T00:00:00+00:00")
    assert CronSchedule("0 0 31 2 *", "UTC").next_after(at("2024-01-01T00:00:00+00:00")) is None


def test_task_id_names_the_entry_and_the_fire_time() -> None:
    """Every replica names the fire of one slot alike."""
    assert cron_task_id("nightly", 1_700_000_000) == "cron:nightly:1700000000000"


# --- catch-up policies (pure) -----------------------------------------------------------------------------------

MINUTELY = CronSchedule("* * * * *", "UTC")
HOURLY = CronSchedule("0 * * * *", "UTC")
NOW = at("2024-06-01T12:00:30+00:00")
TWO_HOURS_AGO = NOW - 2 * 3600


def _plan(policy: CatchUp, cursor: int, now: int = NOW, window_s: int = 86400, cap: int = 1000,
          schedule: CronSchedule = MINUTELY) -> tuple[int, ...]:
    return plan(schedule, policy, cursor, now, window_s=window_s, grace_s=60, cap=cap).slots


def test_latest_fires_the_most_recent_missed_slot_once() -> None:
    """Five hours down, an hourly entry: latest fires the 12:00 slot only, once."""
    later = NOW + 1800  # 12:30:30: the 12:00 slot is 30 minutes late, missed like the others
    result = plan(HOURLY, CatchUp.LATEST, NOW - 5 * 3600, later, window_s=86400, grace_s=60, cap=1000)
    assert result.slots == (at("2024-06-01T12:00:00+00:00"),)
    assert result.skipped == 4 and not result.more


def test_latest_lets_an_on_time_slot_stand_for_the_missed_ones() -> None:
    """A minutely entry two hours down, seen at 12:00:30: the 12:00 slot is on time (30 s late) and fires; the
    119 missed before it do not."""
    assert _plan(CatchUp.LATEST, TWO_HOURS_AGO) == (at("2024-06-01T12:00:00+00:00"),)
    # Seen at 12:01:45 instead: 12:01 is on time, 12:00 (105 s late) is missed and dropped.
    assert _plan(CatchUp.LATEST, TWO_HOURS_AGO, NOW + 75) == (at("2024-06-01T12:01:00+00:00"),)


def test_all_fires_every_missed_slot_within_the_window_and_the_cap() -> None:
    """all: 120 slots for two hours down; the window and the cap bound how far back."""
    slots = _plan(CatchUp.ALL, TWO_HOURS_AGO)
    assert len(slots) == 120 and slots == tuple(sorted(set(slots)))
    assert len(_plan(CatchUp.ALL, TWO_HOURS_AGO, window_s=600)) == 10
    capped = plan(MINUTELY, CatchUp.ALL, TWO_HOURS_AGO, NOW, window_s=86400, grace_s=60, cap=50)
    assert capped.slots == slots[-50:] and capped.more


def test_none_fires_only_on_time_slots() -> None:
    """none: nothing for the downtime; a slot at most grace_s late is not missed, so it fires."""
    assert _plan(CatchUp.NONE, NOW - 5 * 3600, NOW + 1800, schedule=HOURLY) == ()
    assert _plan(CatchUp.NONE, TWO_HOURS_AGO) == (at("2024-06-01T12:00:00+00:00"),)
    assert _plan(CatchUp.NONE, NOW - 40) == (at("2024-06-01T12:00:00+00:00"),)  # up 40 s: the slot came


# --- any spec the registry accepts -----------------------------------------------------------------------------

SPEC = st.tuples(
    st.sampled_from(["*", "*/5", "*/7", "0", "30", "59", "1-5", "1,15", "*/30"]),  # minute
    st.sampled_from(["*", "*/3", "0", "1", "2", "3", "23", "0-23/3", "1-5", "2,3"]),  # hour
    st.sampled_from(["*", "1", "15", "29", "31", "L", "1-7", "*/10"]),  # day of month
    st.sampled_from(["*", "1", "2", "3", "10", "11", "JAN", "*/2"]),  # month
    st.sampled_from(["*", "0", "1", "MON", "1-5", "SUN", "6"]),  # day of week
    st.sampled_from(["", "0", "30", "*/10", "*/30", "5", "0-59/20", "*"]),  # seconds (sixth field), or none
).map(lambda fields: " ".join(f for f in fields if f))
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
                         "America/Havana", "Antarctica/Troll", "Africa/Casablanca"])


@settings(max_examples=150, deadline=None, database=None)
@given(spec=SPEC, tz=ZONES, start=st.integers(1_500_000_000, 2_500_000_000), span=st.integers(1, 3 * 86400))
def test_any_accepted_spec_gives_ordered_fires_in_range_in_any_zone(spec: str, tz: str, start: int,
                                                                    span: int) -> None:
    """Whatever spec the registry accepts, in zones with odd offsets and DST rules (Lord Howe's 30-minute shift,
    Troll's 2-hour one, Casablanca's Ramadan changes): fires are strictly ascending, inside (after, until], agree
    between the newest- and oldest-first walks, and next_after finds the first of them."""
    assume(spec_problem(spec) is None)
    schedule = CronSchedule(spec, tz)
    fires = schedule.fires(start, start + span, 50_000, newest=False)
    assert all(start < t <= start + span for t in fires)
    assert all(a < b for a, b in itertools.pairwise(fires))
    if len(fires) < 50_000:
        assert schedule.fires(start, start + span, 50_000) == fires
    if fires:
        assert schedule.next_after(start) == fires[0]
