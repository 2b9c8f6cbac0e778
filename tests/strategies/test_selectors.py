"""Each strategy's pure rule over plain data (fakes are fine here: no I/O by design)."""

from __future__ import annotations

import pytest

from strategies import load_aware, online_now, priority, skills
from strategies.base import ORDER_CODES, LeadView, RepState

LEAD = LeadView("lead-1")


def rep(rep_id: str, load: int = 0, capacity: int = 4, **fields) -> RepState:
    return RepState(id=rep_id, load=load, capacity=capacity, **fields)


@pytest.mark.parametrize("module", [load_aware, online_now, priority, skills])
def test_every_strategy_walking_an_ordered_index_declares_its_order(module):
    assert module.STRATEGY.name and module.STRATEGY.order and set(module.STRATEGY.order) <= set(ORDER_CODES)
    assert module.STRATEGY.heartbeat_window_s >= 0
    assert module.select([], LEAD) is None


def test_load_aware_takes_the_lowest_utilization_not_the_lowest_load():
    busy_big = rep("big", load=3, capacity=10)
    idle_small = rep("small", load=1, capacity=2)
    assert load_aware.select([idle_small, busy_big], LEAD) is busy_big


def test_load_aware_breaks_exact_ties_by_idle_time_then_id():
    third = rep("a", load=1, capacity=3, last_assigned_ms=500)
    sixth = rep("b", load=2, capacity=6, last_assigned_ms=100)
    assert load_aware.select([third, sixth], LEAD) is sixth, "1/3 == 2/6: the one idle longer wins"
    assert load_aware.select([rep("z"), rep("y")], LEAD).id == "y"


def test_online_now_takes_the_rep_idle_longest_whatever_its_load():
    assert online_now.select([rep("fresh", last_assigned_ms=900), rep("loaded", load=3, last_assigned_ms=10)], LEAD).id == "loaded"


def test_priority_takes_the_best_rank_then_load():
    junior = rep("junior", rank=2)
    senior_busy = rep("senior-busy", load=3, rank=9)
    senior_free = rep("senior-free", load=1, rank=9)
    assert priority.select([junior, senior_busy, senior_free], LEAD) is senior_free


def test_reasons_say_in_words_why_this_rep():
    reason = load_aware.explain({"load": 1, "capacity": 4, "idle_ms": 42_000, "skipped": 2})
    assert "1 of 4" in reason and "25%" in reason and "42.0 s" in reason and "2 better-placed reps" in reason
    drained = online_now.explain({"load": 0, "capacity": 2, "idle_ms": None, "drained": True, "waited_ms": 3200})
    assert "waited 3.2 s" in drained and "never assigned before" in drained
    moved = priority.explain({"load": 0, "capacity": 1, "rank": 9, "manual": True, "from_rep": "ana"})
    assert "rank 9" in moved and "supervisor" in moved and "ana" in moved
