"""priority: the best-ranked rep with room, then the least loaded, then the one idle longest."""

from __future__ import annotations

import pytest

from strategies import priority
from strategies.base import ORDER_CODES, LeadView, RepState

LEAD = LeadView("lead-1", priority=7)


def rep(rep_id: str, load: int = 0, capacity: int = 4, **fields) -> RepState:
    return RepState(id=rep_id, load=load, capacity=capacity, **fields)


def test_declares_its_name_index_order_and_no_extra_heartbeat_window():
    assert priority.STRATEGY.name == "priority"
    assert priority.STRATEGY.order == ("rank", "utilization", "last_assigned")
    assert set(priority.STRATEGY.order) <= set(ORDER_CODES)
    assert priority.STRATEGY.order_codes == "rul"
    assert priority.STRATEGY.heartbeat_window_s == 0


def test_no_candidates_means_no_rep():
    assert priority.select([], LEAD) is None


@pytest.mark.parametrize("flip", [False, True])
def test_the_highest_rank_wins_even_when_busier_and_less_idle(flip):
    junior = rep("junior", load=0, rank=2, last_assigned_ms=0)
    senior = rep("senior", load=3, rank=9, last_assigned_ms=999)
    candidates = [senior, junior] if flip else [junior, senior]
    assert priority.select(candidates, LEAD) is senior


def test_fractional_ranks_count_and_the_default_rank_is_lowest():
    assert priority.select([rep("seven", rank=7), rep("seven-half", load=3, rank=7.5)], LEAD).id == "seven-half"
    assert priority.select([rep("unranked"), rep("ranked", load=3, rank=0.5)], LEAD).id == "ranked"


def test_equal_rank_goes_to_the_least_utilized():
    busy = rep("busy", load=3, capacity=4, rank=9)
    free = rep("free", load=1, capacity=4, rank=9, last_assigned_ms=999)
    assert priority.select([busy, free], LEAD) is free


def test_ranks_count_to_a_thousandth_as_in_the_ready_index():
    finer_but_busy = rep("a", load=3, rank=7.0009)
    light = rep("b", load=1, rank=7.0001)
    assert priority.select([finer_but_busy, light], LEAD) is light, "equal to a thousandth: utilization decides"
    a_thousandth_better = rep("c", load=3, rank=7.002)
    assert priority.select([light, a_thousandth_better], LEAD) is a_thousandth_better


def test_an_exact_utilization_tie_at_equal_rank_goes_to_the_rep_idle_longest_then_the_id():
    third = rep("a", load=1, capacity=3, rank=5, last_assigned_ms=500)
    sixth = rep("b", load=2, capacity=6, rank=5, last_assigned_ms=100)
    assert priority.select([third, sixth], LEAD) is sixth
    assert priority.select([rep("y", rank=5), rep("x", rank=5)], LEAD).id == "x"


def test_the_reason_names_the_priority_the_rank_and_the_load():
    reason = priority.explain({"priority": 7, "rank": 9, "load": 1, "capacity": 3, "idle_ms": 2_000})
    assert reason.startswith("priority:")
    assert "priority 7 lead to the best-ranked rep" in reason
    assert "rank 9," in reason and "1 of 3 open" in reason and "(33%)" in reason and "idle 2.0 s" in reason
    assert "rank 7.5" in priority.explain({"rank": 7.5, "load": 0, "capacity": 1})


def test_the_reason_leaves_out_what_it_does_not_know():
    reason = priority.explain({"load": 0, "capacity": 1})
    assert "rank" not in reason.replace("best-ranked", "") and "lead to" not in reason
    assert "0 of 1" in reason and "never assigned before" in reason


def test_the_reason_tells_how_the_lead_got_there():
    moved = priority.explain({"load": 0, "capacity": 1, "rank": 9, "manual": True, "from_rep": "ana"})
    assert "moved by a supervisor" in moved and "re-routed away from ana" in moved
    drained = priority.explain({"priority": 9, "load": 1, "capacity": 2, "drained": True, "waited_ms": 12_345, "skipped": 1})
    assert "waited 12.3 s" in drained and "1 better-placed rep" in drained and "1 of 2" in drained
