"""weighted's pure rule: the lowest pass (never behind the queue's virtual time), then rep id;
and the stride arithmetic the Lua step shares (strategies/base.py)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from strategies import weighted
from strategies.base import (
    MAX_WEIGHT,
    MIN_WEIGHT,
    PASS_SCALE,
    LeadView,
    QueueView,
    RepState,
    Strategy,
    stride,
)

LEAD = LeadView("l")


def rep(rep_id: str, weight: float = 1.0) -> RepState:
    return RepState(id=rep_id, load=0, capacity=100, weight=weight)


def simulate(weights: dict[str, float], count: int) -> list[str]:
    """select, then the pass grows by the stride, as take_turn does."""
    roster, state, served = [rep(r, w) for r, w in weights.items()], {}, []
    for _ in range(count):
        chosen = weighted.select(roster, LEAD, QueueView("wt", state=state))
        state[f"pass|{chosen.id}"] = str(int(state.get(f"pass|{chosen.id}", 0)) + stride(chosen.weight))
        served.append(chosen.id)
    return served


def test_declares_a_pass_order_with_attribute_weights():
    assert weighted.STRATEGY.order == ("pass",) and weighted.STRATEGY.order_codes == "p"
    assert weighted.STRATEGY.turn == "attribute" and weighted.STRATEGY.walk == "first"


@pytest.mark.parametrize(("order", "turn"), [(("pass",), ""), (("utilization",), "attribute"), (("pass",), "luck")])
def test_a_pass_order_and_a_turn_go_together(order, turn):
    with pytest.raises(ValueError, match="a pass order needs a turn"):
        Strategy(name="x", summary="", order=order, turn=turn, select=weighted.select, explain=weighted.explain)


def test_weights_1_and_2_over_5_leads_give_2_and_3_and_never_two_in_a_row_to_the_lighter():
    served = simulate({"light": 1, "heavy": 2}, 5)
    assert Counter(served) == {"light": 2, "heavy": 3}
    assert ("light", "light") not in itertools.pairwise(served)


@pytest.mark.parametrize("rounds", [1, 7, 100])
def test_over_3n_leads_exactly_n_and_2n(rounds):
    assert Counter(simulate({"light": 1, "heavy": 2}, 3 * rounds)) == {"light": rounds, "heavy": 2 * rounds}


def test_shares_are_smooth_for_uneven_weights():
    served = simulate({"a": 1, "b": 3}, 400)
    # In every window of 8 leads a gets 2 (its quarter), give or take one: no bursts.
    for start in range(392):
        assert 1 <= served[start:start + 8].count("a") <= 3


def test_a_rep_behind_the_virtual_time_counts_from_it():
    queue = QueueView("wt", state={"vt|web": "5000000", "vt": "9000000", "pass|back": "0", "pass|here": "5500000"})
    assert weighted.select([rep("here"), rep("back")], LEAD, queue).id == "back"
    level = QueueView("wt", state={"vt|web": "5500000", "pass|back": "0", "pass|here": "5500000"})
    assert weighted.select([rep("here"), rep("back")], LEAD, level).id == "back"  # tie: by id
    ahead = QueueView("wt", state={"vt|web": "5000000", "vt": "9000000", "pass|back": "0", "pass|here": "4000000"})
    assert weighted.select([rep("here"), rep("back")], LEAD, ahead).id == "back"


def test_strides_are_integers_bounded_by_the_smallest_weight():
    assert stride(1) == PASS_SCALE and stride(2) == PASS_SCALE // 2 and stride(3) == 333_333
    assert stride(MIN_WEIGHT) == stride(MIN_WEIGHT / 10) == 100_000_000
    assert stride(MAX_WEIGHT) == 1_000
    # A pass stays exact in a double for 9e7 leads to one rep even at the smallest weight.
    assert 90_000_000 * stride(MIN_WEIGHT) < 2 ** 53


def test_reason_names_the_weight_and_the_turns_served():
    assert weighted.explain({"weight": 2, "pass": 1_500_000}) == (
        "weighted: weight 2, furthest behind its share among reps with room "
        "(1.50 weighted leads served before this one)")
