"""The eligibility filters that depend on the moment or on the lead, each on its own."""

from __future__ import annotations

import pytest

from strategies import filters
from strategies.base import LeadView, RepState

NOW = 10_000_000
TTL = 60_000
LEAD = LeadView("l")
MOMENT = filters.Moment(now_ms=NOW, presence_ttl_ms=TTL, heartbeat_window_ms=15_000)


def rep(rep_id: str, **fields) -> RepState:
    defaults = {"load": 0, "capacity": 2, "status": "online", "last_seen_ms": NOW - 1_000}
    return RepState(id=rep_id, **{**defaults, **fields})


def ids(reps) -> list[str]:
    return [r.id for r in reps]


def test_a_pipeline_runs_the_named_filters_in_one_order_whatever_order_they_are_named_in():
    assert filters.pipeline(("skills", "recent", "room", "present")) == (
        filters.present, filters.with_room, filters.recent, filters.with_skills)
    assert filters.pipeline(("room", "present")) == (filters.present, filters.with_room)


@pytest.mark.parametrize("status", ["away", "offline", "busy", ""])
def test_present_drops_reps_that_are_not_online(status):
    assert ids(filters.present([rep("on"), rep("x", status=status)], LEAD, MOMENT)) == ["on"]


def test_present_keeps_a_heartbeat_exactly_at_the_ttl_and_drops_one_a_millisecond_older():
    reps = [rep("edge", last_seen_ms=NOW - TTL), rep("stale", last_seen_ms=NOW - TTL - 1), rep("never", last_seen_ms=0)]
    assert ids(filters.present(reps, LEAD, MOMENT)) == ["edge"]


def test_present_follows_the_ttl_of_the_moment():
    reps = [rep("a", last_seen_ms=NOW - 5_000), rep("b", last_seen_ms=NOW - 500)]
    assert ids(filters.present(reps, LEAD, filters.Moment(NOW, 1_000))) == ["b"]


def test_present_keeps_the_order_and_leaves_the_input_alone():
    reps = [rep("c"), rep("a"), rep("b", status="away")]
    assert ids(filters.present(reps, LEAD, MOMENT)) == ["c", "a"]
    assert ids(reps) == ["c", "a", "b"]


def test_recent_applies_the_queue_window():
    reps = [rep("fresh", last_seen_ms=NOW - 15_000), rep("stale", last_seen_ms=NOW - 15_001)]
    assert ids(filters.recent(reps, LEAD, MOMENT)) == ["fresh"]


@pytest.mark.parametrize("window", [0, -1])
def test_recent_with_no_window_keeps_everyone(window):
    reps = [rep("fresh"), rep("ancient", last_seen_ms=0)]
    assert ids(filters.recent(reps, LEAD, filters.Moment(NOW, TTL, window))) == ["fresh", "ancient"]


def test_recent_only_looks_at_the_heartbeat():
    assert ids(filters.recent([rep("away", status="away", load=2)], LEAD, MOMENT)) == ["away"]


def test_with_room_needs_load_below_capacity():
    reps = [rep("free"), rep("one-left", load=1), rep("full", load=2), rep("over", load=3), rep("none", capacity=0)]
    assert ids(filters.with_room(reps, LEAD, MOMENT)) == ["free", "one-left"]


def test_with_skills_needs_every_skill_the_lead_asks_for_at_any_level():
    reps = [
        rep("both", skills={"spanish": 1, "billing": 9}),
        rep("spanish-only", skills={"spanish": 10}),
        rep("none"),
    ]
    assert ids(filters.with_skills(reps, LeadView("l", skills=("spanish", "billing")), MOMENT)) == ["both"]
    assert ids(filters.with_skills(reps, LeadView("l", skills=("spanish",)), MOMENT)) == ["both", "spanish-only"]


def test_with_skills_keeps_everyone_when_the_lead_asks_for_nothing():
    reps = [rep("a", skills={"x": 1}), rep("b")]
    assert ids(filters.with_skills(reps, LEAD, MOMENT)) == ["a", "b"]
