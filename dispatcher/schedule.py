"""Rep schedules (issue #11): weekly working hours in the rep's time zone and absences. Lua has no
time zones, so Python decides, for an instant, whether a rep is on shift and when that next flips;
the scripts only keep the answer (lua/shift.lua) and compare numbers.

A rep is on shift at an instant when the wall-clock time of that instant in its zone falls in one of
that weekday's windows ([start, end), minutes of the day; no `hours` = every instant) and in none of
its absences ([from, to)). Defined on the wall clock, a window means what a person reads off it
across a DST change: 09:00-17:00 is 8 hours on most days and 7 or 9 on the nights the clocks move.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MS = 86_400_000
# After the last absence ends, the weekly hours alone decide, and they repeat every week: a flip not
# found within a week (plus a day for a DST change at either end) never comes.
WEEK_MS = 8 * DAY_MS
# Absences lie within these: the search for the next change walks past an absence's end by a week,
# and Python's datetimes end with the year 9999.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """A schedule that cannot be used; str() says what is wrong and where, in words."""


@dataclass(frozen=True)
class Schedule:
    zone: ZoneInfo
    # weekday (0 = Monday) -> windows as (start, end) minutes of the day; None = always on.
    hours: Mapping[int, tuple[tuple[int, int], ...]] | None
    # [from, to) in ms since the epoch, overlapping ones merged, in order.
    absences: tuple[tuple[int, int], ...]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _instant_ms(text: str, where: str) -> int:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{where} must be an ISO-8601 date and time with a UTC offset, "
                            f"such as 2026-12-24T09:00:00+01:00; got {text!r}") from None
    if at.tzinfo is None:
        raise ScheduleError(f"{where} must include a UTC offset (such as +01:00 or Z); got {text!r}")
    if not EARLIEST <= at < LATEST:
        raise ScheduleError(f"{where} must lie in the years 1970 to 2199; got {text!r}")
    return int(at.timestamp() * 1000)


def parse_schedule(raw: Mapping[str, Any]) -> Schedule:
    """The schedule of a rep profile (its shape already checked by models.py), its meaning checked:
    a zone that exists, windows that end after they start and do not overlap, absences that end
    after they start. Raises ScheduleError in words."""
    zone_name = raw.get("timezone", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"schedule.timezone must be an IANA time zone such as Europe/Berlin or UTC; "
                            f"got {zone_name!r}") from None
    hours = None
    if raw.get("hours") is not None:
        hours = {}
        for day, windows in raw["hours"].items():
            spans = sorted((_minutes(start), _minutes(end), f"{start}-{end}")
                           for start, end in (window.split("-") for window in windows))
            for start, end, text in spans:
                if end <= start:
                    raise ScheduleError(f"schedule.hours.{day}: window {text} must end after it starts "
                                        "(use 00:00-24:00 for the whole day; a shift past midnight is two "
                                        "windows, one on each day)")
            for (_, end, before), (start, _, after) in zip(spans, spans[1:]):
                if start < end:
                    raise ScheduleError(f"schedule.hours.{day}: windows {before} and {after} overlap")
            hours[DAYS.index(day)] = tuple((start, end) for start, end, _ in spans)
    absences = []
    for n, absence in enumerate(raw.get("absences") or []):
        start = _instant_ms(absence["from"], f"schedule.absences[{n}].from")
        end = _instant_ms(absence["to"], f"schedule.absences[{n}].to")
        if end <= start:
            raise ScheduleError(f"schedule.absences[{n}]: from ({absence['from']}) must be before to ({absence['to']})")
        absences.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(absences):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return Schedule(zone, hours, tuple(merged))


def _absence_around(schedule: Schedule, at_ms: int) -> tuple[int, int] | None:
    n = bisect_right(schedule.absences, (at_ms, float("inf"))) - 1
    if n >= 0 and schedule.absences[n][0] <= at_ms < schedule.absences[n][1]:
        return schedule.absences[n]
    return None


def on_shift(schedule: Schedule, at_ms: int) -> bool:
    if _absence_around(schedule, at_ms):
        return False
    if schedule.hours is None:
        return True
    local = datetime.fromtimestamp(at_ms // 1000, schedule.zone)
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in schedule.hours.get(local.weekday(), ()))


def _offset_s(zone: ZoneInfo, at_ms: int) -> float:
    offset = datetime.fromtimestamp(at_ms // 1000, zone).utcoffset()
    return offset.total_seconds() if offset else 0.0


def _changes_between(schedule: Schedule, start_ms: int, end_ms: int) -> Iterator[int]:
    """Every instant in (start_ms, end_ms] where on_shift may change, in no order: absence edges,
    window edges on each local day (both readings of a wall time the clocks pass twice), and the
    instants the zone's offset changes (where the wall clock jumps over or back across an edge)."""
    for edges in schedule.absences:
        yield from edges
    if schedule.hours is None:
        return
    zone = schedule.zone
    day = datetime.fromtimestamp(start_ms // 1000, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_ms // 1000, zone).date() + timedelta(days=1)
    while day <= last:
        midnight = datetime.combine(day, datetime.min.time())
        for start, end in schedule.hours.get(day.weekday(), ()):
            for minute in (start, end):
                wall = midnight + timedelta(minutes=minute)
                for fold in (0, 1):
                    yield int(wall.replace(tzinfo=zone, fold=fold).timestamp() * 1000)
        day += timedelta(days=1)
    # Offset changes, found day by day and pinned to the millisecond.
    at = start_ms
    while at < end_ms:
        low, high = at, min(at + DAY_MS, end_ms)
        if _offset_s(zone, low) != _offset_s(zone, high):
            after = _offset_s(zone, high)
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if _offset_s(zone, middle) == after else (middle, high)
            yield high
        at += DAY_MS


def next_change(schedule: Schedule, at_ms: int) -> int | None:
    """The first instant after `at_ms` (ms) at which on_shift differs from on_shift(at_ms); None
    when it never will."""
    now = on_shift(schedule, at_ms)
    last_absence_end = schedule.absences[-1][1] if schedule.absences else at_ms
    start = at_ms
    while True:
        # Inside an absence nothing flips before it ends (overlapping ones are merged).
        absence = _absence_around(schedule, start)
        if absence and not now:
            start = absence[1] - 1
        end = start + WEEK_MS
        candidates = sorted({c for c in _changes_between(schedule, start, end) if at_ms < c and start < c <= end})
        for candidate in candidates:
            if on_shift(schedule, candidate) != now:
                return candidate
        if end >= last_absence_end + WEEK_MS:
            return None
        start = end


def shift_at(raw: Mapping[str, Any] | None, at_ms: int) -> tuple[bool, int | None]:
    """A profile's schedule (None: no schedule, always on shift) at `at_ms`: on shift, and when that
    next changes (ms, None for never)."""
    if raw is None:
        return True, None
    schedule = parse_schedule(raw)
    return on_shift(schedule, at_ms), next_change(schedule, at_ms)

