"""load_aware, the default: lowest load/capacity, ties to the rep idle longest, then id."""

from __future__ import annotations

import pytest

from strategies import load_aware
from strategies.base import ORDER_CODES, LeadView, RepState

LEAD = LeadView("lead-1")


def rep(rep_id: str, load: int = 0, capacity: int = 4, **fields) -> RepState:
    return RepState(id=rep_id, load=load, capacity=capacity, **fields)


def test_declares_its_name_index_order_and_no_extra_heartbeat_window():
    assert load_aware.STRATEGY.name == "load_aware"
    assert load_aware.STRATEGY.order == ("utilization", "last_assigned")
    assert set(load_aware.STRATEGY.order) <= set(ORDER_CODES)
    assert load_aware.STRATEGY.order_codes == "ul"
    assert load_aware.STRATEGY.heartbeat_window_s == 0


def test_no_candidates_means_no_rep():
    assert load_aware.select([], LEAD) is None


def test_a_single_candidate_is_chosen_as_is():
    only = rep("only", load=3)
    assert load_aware.select([only], LEAD) is only


def test_lowest_utilization_wins_not_lowest_load():
    big_busy = rep("big", load=3, capacity=10)  # 30 %
    small_light = rep("small", load=1, capacity=2)  # 50 %
    assert load_aware.select([small_light, big_busy], LEAD) is big_busy
    assert load_aware.select([big_busy, small_light], LEAD) is big_busy


def test_utilization_beats_idle_time():
    idle_but_busier = rep("idle", load=2, capacity=4, last_assigned_ms=0)
    recent_but_lighter = rep("recent", load=1, capacity=4, last_assigned_ms=999_999)
    assert load_aware.select([idle_but_busier, recent_but_lighter], LEAD) is recent_but_lighter


@pytest.mark.parametrize("flip", [False, True])
def test_an_exact_utilization_tie_goes_to_the_rep_idle_longest(flip):
    third = rep("a", load=1, capacity=3, last_assigned_ms=500)
    sixth = rep("b", load=2, capacity=6, last_assigned_ms=100)  # 2/6 == 1/3 exactly
    candidates = [sixth, third] if flip else [third, sixth]
    assert load_aware.select(candidates, LEAD) is sixth


def test_an_exact_tie_with_the_other_rep_idle_longer():
    third = rep("z", load=1, capacity=3, last_assigned_ms=100)
    sixth = rep("a", load=2, capacity=6, last_assigned_ms=500)
    assert load_aware.select([sixth, third], LEAD) is third, "idle time decides before the id"


def test_a_near_tie_is_not_a_tie():
    almost_a_third = rep("recent", load=333, capacity=1000, last_assigned_ms=900)  # 0.333 < 1/3
    a_third = rep("idle", load=1, capacity=3, last_assigned_ms=0)
    assert load_aware.select([a_third, almost_a_third], LEAD) is almost_a_third


def test_never_assigned_counts_as_idle_longest():
    never = rep("never", load=1, capacity=2, last_assigned_ms=0)
    once = rep("once", load=2, capacity=4, last_assigned_ms=1)
    assert load_aware.select([once, never], LEAD) is never


def test_full_ties_go_to_the_smallest_id():
    assert load_aware.select([rep("y"), rep("z"), rep("x")], LEAD).id == "x"
    assert load_aware.select([rep("b", load=1, capacity=2), rep("a", load=2, capacity=4)], LEAD).id == "a"


def test_the_reason_states_the_load_and_the_idle_time():
    reason = load_aware.explain({"load": 1, "capacity": 4, "idle_ms": 42_000})
    assert reason.startswith("load-aware")
    assert "least loaded" in reason
    assert "1 of 4 open" in reason and "(25%)" in reason and "idle 42.0 s" in reason
    assert "supervisor" not in reason and "waited" not in reason and "better-placed" not in reason


def test_the_reason_for_a_rep_never_assigned_before_and_without_capacity_share():
    reason = load_aware.explain({"load": 0, "capacity": 0, "idle_ms": None})
    assert "0 of 0 open" in reason and "never assigned before" in reason and "%" not in reason


def test_the_reason_tells_how_the_lead_got_there():
    drained = load_aware.explain({"load": 2, "capacity": 3, "idle_ms": 1500, "drained": True, "waited_ms": 3200})
    assert "2 of 3" in drained and "(66%)" in drained and "waited 3.2 s until this rep had room" in drained
    skipped = load_aware.explain({"load": 0, "capacity": 2, "idle_ms": 10, "skipped": 2})
    assert "2 better-placed reps lacked a required skill or a fresh heartbeat" in skipped
    moved = load_aware.explain({"load": 0, "capacity": 2, "manual": True, "from_rep": "ana"})
    assert "moved by a supervisor" in moved and "re-routed away from ana" in moved
