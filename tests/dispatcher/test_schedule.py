"""Rep schedules, pure: parsing in words, on-shift at an instant, and the next instant it flips,
checked against a minute-by-minute walk (hypothesis) and by hand across DST, midnight and absences."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.schedule import DAYS, ScheduleError, next_change, on_shift, parse_schedule, shift_at

MINUTE_MS = 60_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso(at_ms: int | None) -> str | None:
    return None if at_ms is None else datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()


def test_office_hours_flip_at_their_edges_in_the_reps_zone():
    schedule = parse_schedule({"timezone": "Europe/Berlin", "hours": {"mon": ["09:00-12:00", "13:00-17:00"]}})
    # Monday 2026-11-30, Berlin is UTC+1.
    assert on_shift(schedule, ms("2026-11-30T09:30:00+01:00"))
    assert not on_shift(schedule, ms("2026-11-30T12:30:00+01:00"))
    assert iso(next_change(schedule, ms("2026-11-30T09:30:00+01:00"))) == "2026-11-30T11:00:00+00:00"
    assert iso(next_change(schedule, ms("2026-11-30T12:00:00+01:00"))) == "2026-11-30T12:00:00+00:00"
    # After Monday's last window: next Monday (Tuesday to Sunday are off).
    assert iso(next_change(schedule, ms("2026-11-30T17:00:00+01:00"))) == "2026-12-07T08:00:00+00:00"


def test_a_window_across_the_spring_dst_change_is_read_off_the_wall_clock():
    # 2026-03-29 (a Sunday): Berlin clocks go from 02:00 CET to 03:00 CEST (01:00 UTC).
    schedule = parse_schedule({"timezone": "Europe/Berlin", "hours": {"sun": ["01:00-04:00"]}})
    start = ms("2026-03-29T00:30:00+01:00")
    assert iso(next_change(schedule, start)) == "2026-03-29T00:00:00+00:00"  # 01:00 CET
    # It ends at 04:00 CEST: two hours of real time, the hour 02:00-03:00 never happened.
    assert iso(next_change(schedule, ms("2026-03-29T01:00:00+01:00"))) == "2026-03-29T02:00:00+00:00"


def test_a_window_inside_the_hour_the_clocks_skip_is_never_on():
    schedule = parse_schedule({"timezone": "Europe/Berlin", "hours": {"sun": ["02:00-02:30", "05:00-06:00"]}})
    start = ms("2026-03-29T01:30:00+01:00")
    assert iso(next_change(schedule, start)) == "2026-03-29T03:00:00+00:00"  # 05:00 CEST


def test_a_window_across_the_autumn_dst_change_lasts_the_extra_hour():
    # 2026-10-25 (a Sunday): 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:xx happens twice.
    schedule = parse_schedule({"timezone": "Europe/Berlin", "hours": {"sun": ["02:30-03:30"]}})
    first = ms("2026-10-25T02:30:00+02:00")
    assert on_shift(schedule, first)
    # Off at 03:00 CEST (the wall clock jumps back to 02:00 CET, out of then into the window again at 02:30).
    assert iso(next_change(schedule, first)) == "2026-10-25T01:00:00+00:00"
    assert iso(next_change(schedule, ms("2026-10-25T02:00:00+01:00"))) == "2026-10-25T01:30:00+00:00"
    assert iso(next_change(schedule, ms("2026-10-25T02:30:00+01:00"))) == "2026-10-25T02:30:00+00:00"


def test_a_night_shift_is_two_windows_and_does_not_flip_at_midnight():
    schedule = parse_schedule({"hours": {"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]}})
    assert iso(next_change(schedule, ms("2026-11-30T23:00:00+00:00"))) == "2026-12-01T06:00:00+00:00"
    always = parse_schedule({"hours": {day: ["00:00-24:00"] for day in DAYS}})
    assert on_shift(always, ms("2026-11-30T23:59:59+00:00"))
    assert next_change(always, ms("2026-11-30T23:00:00+00:00")) is None


def test_absences_overlapping_hours_take_precedence_and_merge():
    schedule = parse_schedule({"timezone": "UTC", "hours": {day: ["09:00-17:00"] for day in DAYS},
                               "absences": [{"from": "2026-12-01T12:00:00Z", "to": "2026-12-03T10:00:00Z"},
                                            {"from": "2026-12-03T09:00:00+00:00", "to": "2026-12-03T11:00:00Z",
                                             "reason": "dentist"}]})
    assert iso(next_change(schedule, ms("2026-12-01T10:00:00+00:00"))) == "2026-12-01T12:00:00+00:00"
    assert iso(next_change(schedule, ms("2026-12-01T12:00:00+00:00"))) == "2026-12-03T11:00:00+00:00"


def test_no_schedule_and_no_hours_are_always_on():
    assert shift_at(None, 0) == (True, None)
    assert shift_at({"timezone": "Asia/Tokyo"}, 0) == (True, None)
    on, until = shift_at({"absences": [{"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"}]},
                         ms("2026-12-01T00:00:00+00:00"))
    assert (on, iso(until)) == (True, "2026-12-24T00:00:00+00:00")


def test_a_long_absence_is_skipped_not_walked():
    schedule = parse_schedule({"hours": {"mon": ["09:00-10:00"]},
                               "absences": [{"from": "2026-01-01T00:00:00Z", "to": "2046-01-01T00:00:00Z"}]})
    assert iso(next_change(schedule, ms("2026-06-01T00:00:00+00:00"))) == "2046-01-01T09:00:00+00:00"  # a Monday


@pytest.mark.parametrize(("raw", "words"), [
    ({"timezone": "Mars/Olympus"}, "schedule.timezone must be an IANA time zone"),
    ({"hours": {"mon": ["17:00-09:00"]}}, "schedule.hours.mon: window 17:00-09:00 must end after it starts"),
    ({"hours": {"tue": ["09:00-12:00", "11:00-13:00"]}}, "schedule.hours.tue: windows 09:00-12:00 and 11:00-13:00 overlap"),
    ({"absences": [{"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}]}, "schedule.absences[0]: from"),
    ({"absences": [{"from": "2026-12-02T00:00:00", "to": "2026-12-03T00:00:00Z"}]},
     "schedule.absences[0].from must include a UTC offset"),
    ({"absences": [{"from": "tomorrow", "to": "2026-12-03T00:00:00Z"}]}, "schedule.absences[0].from must be an ISO-8601"),
    ({"absences": [{"from": "2026-12-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}]},
     "schedule.absences[0].to must lie in the years 1970 to 2199"),
])
def test_bad_schedules_are_refused_in_words(raw, words):
    with pytest.raises(ScheduleError, match=r"^" + words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_schedule(raw)


# Edges on the quarter hour (some zones, such as Lord Howe, move their clocks by half an hour), often
# in the night hours the clocks change in.
EDGE = st.one_of(st.integers(0, 96), st.integers(4, 16)).map(lambda quarter: quarter * 15)


@st.composite
def windows(draw):
    edges = sorted(set(draw(st.lists(EDGE, max_size=6))))
    pairs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if a < b]
    return [f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in pairs]


# A zone, and up to two days before one of its 2026 DST changes (or any time in June).
STARTS = st.sampled_from([("Europe/Berlin", "2026-03-29T01:00:00Z"), ("Europe/Berlin", "2026-10-25T01:00:00Z"),
                          ("America/New_York", "2026-03-08T07:00:00Z"), ("America/New_York", "2026-11-01T06:00:00Z"),
                          ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"), ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
                          ("Asia/Kolkata", "2026-06-15T00:00:00Z"), ("UTC", "2026-06-15T00:00:00Z")])


@st.composite
def schedules(draw):
    zone, change = draw(STARTS)
    start = ms(change) - draw(st.integers(0, 2 * 24 * 60)) * MINUTE_MS
    raw = {"timezone": zone}
    if draw(st.booleans()):
        # Sunday always has hours: the clocks of these zones change on a Sunday night.
        raw["hours"] = {day: draw(windows()) for day in {"sun", *draw(st.sets(st.sampled_from(DAYS)))}}
    absences = []
    for _ in range(draw(st.integers(0, 3))):
        begin = start + draw(st.integers(-2 * 24 * 60, 6 * 24 * 60)) * MINUTE_MS
        end = begin + draw(st.integers(1, 3 * 24 * 60)) * MINUTE_MS
        absences.append({"from": datetime.fromtimestamp(begin / 1000, UTC).isoformat(),
                         "to": datetime.fromtimestamp(end / 1000, UTC).isoformat()})
    raw["absences"] = absences
    return raw, start


@settings(max_examples=300, deadline=None)
@given(schedules())
def test_the_next_change_is_the_first_minute_on_shift_flips(case):
    """Every edge falls on a whole minute, so a walk minute by minute finds the same first flip."""
    raw, start = case
    schedule = parse_schedule(raw)
    now = on_shift(schedule, start)
    found = next_change(schedule, start)
    horizon = start + 16 * 24 * 60 * MINUTE_MS
    walked = next((at for at in range(start + MINUTE_MS, horizon, MINUTE_MS) if on_shift(schedule, at) != now), None)
    if walked is None:
        assert found is None or found >= horizon
    else:
        assert found == walked
