"""Filters run before the selector; the policy resolves names from the routing file."""

from __future__ import annotations

import pytest

from strategies import filters, policy
from strategies.base import LeadView, RepState

NOW = 1_000_000
MOMENT = filters.Moment(now_ms=NOW, presence_ttl_ms=60_000, heartbeat_window_ms=15_000)


def rep(rep_id: str, **fields) -> RepState:
    defaults = {"load": 0, "capacity": 2, "status": "online", "last_seen_ms": NOW - 1_000}
    return RepState(id=rep_id, **{**defaults, **fields})


def test_present_needs_online_and_a_heartbeat_within_the_ttl():
    kept = filters.present([rep("on"), rep("away", status="away"), rep("silent", last_seen_ms=NOW - 61_000)],
                           LeadView("l"), MOMENT)
    assert [r.id for r in kept] == ["on"]


def test_recent_applies_the_queue_window_only_when_it_has_one():
    reps = [rep("fresh"), rep("stale", last_seen_ms=NOW - 20_000)]
    assert [r.id for r in filters.recent(reps, LeadView("l"), MOMENT)] == ["fresh"]
    no_window = filters.Moment(NOW, 60_000, 0)
    assert len(filters.recent(reps, LeadView("l"), no_window)) == 2


def test_room_and_skills():
    reps = [rep("full", load=2), rep("bilingual", skills={"spanish": 3, "english": 9}), rep("english", skills={"english": 9})]
    assert [r.id for r in filters.with_room(reps, LeadView("l"), MOMENT)] == ["bilingual", "english"]
    spanish = LeadView("l", skills=("spanish", "english"))
    assert [r.id for r in filters.with_skills(reps, spanish, MOMENT)] == ["bilingual"]


def test_choose_filters_then_selects():
    reps = [rep("away", status="away"), rep("full", load=2), rep("busy", load=1), rep("free")]
    assert policy.choose("load_aware", reps, LeadView("l"), MOMENT).id == "free"
    assert policy.choose("load_aware", reps[:2], LeadView("l"), MOMENT) is None


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(ValueError, match="known strategies: load_aware, online_now, priority"):
        policy.strategy("fastest")
