"""round_robin's pure rule: the next rep by id after the queue's cursor, wrapping once."""

from __future__ import annotations

import pytest

from strategies import round_robin
from strategies.base import LeadView, QueueView, RepState, Strategy

LEAD = LeadView("l")


def reps(*ids: str) -> list[RepState]:
    return [RepState(id=rep_id, load=0, capacity=1) for rep_id in ids]


def after(cursor: str | None) -> QueueView:
    return QueueView("rr", state={} if cursor is None else {"cursor": cursor})


def test_declares_a_cycle_walk_over_bare_rep_ids():
    assert round_robin.STRATEGY.name == "round_robin"
    assert round_robin.STRATEGY.order == () and round_robin.STRATEGY.order_codes == ""
    assert round_robin.STRATEGY.walk == "cycle"


def test_a_cycle_walk_over_sort_fields_is_refused_at_import():
    with pytest.raises(ValueError, match="resumes after a rep id"):
        Strategy(name="x", summary="", order=("utilization",), walk="cycle", select=round_robin.select,
                 explain=round_robin.explain)


@pytest.mark.parametrize(("cursor", "expected"), [
    (None, "a"),   # no turn yet: the first id
    ("a", "b"),
    ("b", "d"),    # c is not among the candidates (away, full, lacking a skill): passed over
    ("bb", "d"),   # the cursor names a rep that left: the walk resumes after its id
    ("d", "a"),    # the last id: wraps
    ("z", "a"),
])
def test_the_next_candidate_after_the_cursor(cursor, expected):
    assert round_robin.select(reps("d", "a", "b"), LEAD, after(cursor)).id == expected


def test_the_only_candidate_gets_the_lead_even_right_after_its_turn():
    assert round_robin.select(reps("a"), LEAD, after("a")).id == "a"


def test_no_candidates_means_no_rep():
    assert round_robin.select([], LEAD, after("a")) is None


def test_a_full_rotation_serves_everyone_once_in_id_order():
    roster, served, cursor = reps("c", "a", "d", "b"), [], None
    for _ in range(8):
        cursor = round_robin.select(roster, LEAD, after(cursor)).id
        served.append(cursor)
    assert served == ["a", "b", "c", "d"] * 2


def test_reasons_name_the_rep_served_before():
    assert round_robin.explain({"after": "rep-7"}) == "round robin: next in turn after rep-7"
    assert round_robin.explain({"after": None}) == "round robin: first turn of the rotation"
    assert round_robin.explain({"after": "a", "skipped": 2}).endswith(
        "; 2 better-placed reps lacked a required skill or a fresh heartbeat")
