"""online_now: the rep idle longest among those with a fresh heartbeat (window 15 s by default)."""

from __future__ import annotations

import pytest

from strategies import online_now
from strategies.base import ORDER_CODES, LeadView, RepState

LEAD = LeadView("lead-1")


def rep(rep_id: str, load: int = 0, capacity: int = 4, **fields) -> RepState:
    return RepState(id=rep_id, load=load, capacity=capacity, **fields)


def test_declares_its_name_index_order_and_a_15_second_heartbeat_window():
    assert online_now.STRATEGY.name == "online_now"
    assert online_now.STRATEGY.order == ("last_assigned",)
    assert set(online_now.STRATEGY.order) <= set(ORDER_CODES)
    assert online_now.STRATEGY.order_codes == "l"
    assert online_now.STRATEGY.heartbeat_window_s == 15.0


def test_no_candidates_means_no_rep():
    assert online_now.select([], LEAD) is None


@pytest.mark.parametrize("flip", [False, True])
def test_the_rep_idle_longest_wins_whatever_its_load(flip):
    fresh_light = rep("fresh", load=0, last_assigned_ms=900)
    idle_loaded = rep("loaded", load=3, last_assigned_ms=10)
    candidates = [idle_loaded, fresh_light] if flip else [fresh_light, idle_loaded]
    assert online_now.select(candidates, LEAD) is idle_loaded


def test_never_assigned_beats_any_assignment():
    assert online_now.select([rep("once", last_assigned_ms=1), rep("never", last_assigned_ms=0)], LEAD).id == "never"


def test_an_exact_utilization_tie_changes_nothing_idle_time_decides():
    third = rep("a", load=1, capacity=3, last_assigned_ms=500)
    sixth = rep("b", load=2, capacity=6, last_assigned_ms=100)
    assert online_now.select([third, sixth], LEAD) is sixth
    later = rep("b", load=2, capacity=6, last_assigned_ms=700)
    assert online_now.select([third, later], LEAD) is third


def test_equal_idle_time_goes_to_the_smallest_id():
    assert online_now.select([rep("m", load=3, last_assigned_ms=5), rep("k", load=0, last_assigned_ms=5)], LEAD).id == "k"
    assert online_now.select([rep("k", load=0, last_assigned_ms=5), rep("m", load=3, last_assigned_ms=5)], LEAD).id == "k"


def test_the_reason_says_fresh_heartbeat_and_the_load():
    reason = online_now.explain({"load": 2, "capacity": 5, "idle_ms": 61_500})
    assert reason.startswith("online-now")
    assert "idle longest" in reason and "fresh heartbeat" in reason
    assert "2 of 5 open" in reason and "(40%)" in reason and "idle 61.5 s" in reason
    assert "supervisor" not in reason and "waited" not in reason


def test_the_reason_tells_how_the_lead_got_there():
    drained = online_now.explain({"load": 0, "capacity": 2, "idle_ms": None, "drained": True, "waited_ms": 3200})
    assert "0 of 2" in drained and "never assigned before" in drained and "waited 3.2 s" in drained
    skipped = online_now.explain({"load": 1, "capacity": 2, "idle_ms": 0, "skipped": 3})
    assert "idle 0.0 s" in skipped and "3 better-placed reps" in skipped
    moved = online_now.explain({"load": 1, "capacity": 2, "manual": True})
    assert "moved by a supervisor" in moved and "re-routed" not in moved
