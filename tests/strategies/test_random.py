"""random's pure model states eligibility only; the uniform draw is Lua's (test_rotation)."""

from __future__ import annotations

from strategies import policy, random_pick
from strategies.base import LeadView, RepState
from strategies.filters import Moment

NOW = 1_000_000


def test_declares_a_random_walk_over_bare_rep_ids():
    assert random_pick.STRATEGY.name == "random"
    assert random_pick.STRATEGY.order == () and random_pick.STRATEGY.walk == "random"


def test_choose_offers_only_eligible_reps():
    reps = [RepState("away", 0, 2, status="away", last_seen_ms=NOW), RepState("full", 2, 2, last_seen_ms=NOW),
            RepState("ok", 1, 2, last_seen_ms=NOW, skills={"german": 2}), RepState("mute", 0, 2, last_seen_ms=NOW)]
    moment = Moment(NOW, 60_000)
    assert policy.choose("random", reps, LeadView("l", skills=("german",)), moment).id == "ok"
    assert policy.choose("random", reps[:2], LeadView("l"), moment) is None


def test_reason_says_it_was_a_draw_and_among_how_many():
    assert random_pick.explain({"ready": 7}) == (
        "random: a uniform draw among the reps who could take it (7 in the queue's ready list)")
    assert random_pick.explain({}) == "random: a uniform draw among the reps who could take it"
