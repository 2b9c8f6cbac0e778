"""skills: the best sum of levels over the lead's skills, then the least loaded, then the one idle
longest; a decision compares at most `max_compared` eligible reps, least loaded first."""

from __future__ import annotations

import pytest

from dispatcher.routing import RoutingError, parse_routing
from strategies import skills
from strategies.base import LeadView, QueueView, RepState

SPANISH_BILLING = LeadView("lead-1", skills=("spanish", "billing"))


def rep(rep_id: str, load: int = 0, capacity: int = 4, **fields) -> RepState:
    return RepState(id=rep_id, load=load, capacity=capacity, **fields)


def test_declares_the_best_score_walk_over_the_load_aware_order():
    assert skills.STRATEGY.name == "skills"
    assert skills.STRATEGY.walk == "best_score"
    assert skills.STRATEGY.order_codes == "ul"
    assert skills.STRATEGY.with_defaults({}) == {"max_compared": 100}


def test_no_candidates_means_no_rep():
    assert skills.select([], SPANISH_BILLING) is None


@pytest.mark.parametrize("flip", [False, True])
def test_the_best_score_wins_even_when_busier_and_less_idle(flip):
    light = rep("light", load=0, skills={"spanish": 9, "billing": 2}, last_assigned_ms=0)  # 11
    expert = rep("expert", load=3, skills={"spanish": 7, "billing": 8}, last_assigned_ms=999)  # 15
    candidates = [expert, light] if flip else [light, expert]
    assert skills.select(candidates, SPANISH_BILLING) is expert


def test_only_the_skills_asked_count():
    polyglot = rep("polyglot", skills={"spanish": 5, "billing": 5, "french": 10, "german": 10})
    focused = rep("focused", load=2, skills={"spanish": 6, "billing": 5})
    assert skills.select([polyglot, focused], SPANISH_BILLING) is focused


def test_a_skill_asked_twice_scores_once():
    twice = LeadView("l", skills=("spanish", "spanish", "billing"))
    spanish_heavy = rep("s", skills={"spanish": 10, "billing": 1})  # 11 once, 21 if counted twice
    billing_heavy = rep("b", skills={"spanish": 3, "billing": 9})  # 12 once, 15 twice
    assert skills.asked(twice) == ["spanish", "billing"]
    assert skills.select([spanish_heavy, billing_heavy], twice) is billing_heavy


def test_equal_scores_go_to_the_least_utilized_then_the_rep_idle_longest_then_the_id():
    busy = rep("busy", load=3, skills={"spanish": 8, "billing": 8})
    free = rep("free", load=1, skills={"spanish": 6, "billing": 10}, last_assigned_ms=999)
    assert skills.select([busy, free], SPANISH_BILLING) is free
    recent = rep("recent", load=1, skills={"spanish": 8, "billing": 8}, last_assigned_ms=500)
    idle = rep("idle", load=1, skills={"spanish": 8, "billing": 8}, last_assigned_ms=100)
    assert skills.select([recent, idle], SPANISH_BILLING) is idle
    assert skills.select([rep("y", skills={"spanish": 1}), rep("x", skills={"spanish": 1})],
                         LeadView("l", skills=("spanish",))).id == "x"


def test_a_lead_asking_no_skills_goes_to_the_least_loaded():
    expert = rep("expert", load=2, skills={"spanish": 10})
    novice = rep("novice", load=1)
    assert skills.select([expert, novice], LeadView("l")) is novice


def test_a_rep_lacking_a_skill_scores_nothing_for_it():
    assert skills.score(rep("a", skills={"spanish": 7}), ["spanish", "billing"]) == 7


def test_only_max_compared_reps_are_compared_least_loaded_first():
    least_loaded = [rep(f"r{n}", load=n, capacity=10, skills={"spanish": 1}) for n in range(3)]
    best_but_busiest = rep("best", load=5, capacity=10, skills={"spanish": 10})
    spanish = LeadView("l", skills=("spanish",))
    everyone = [best_but_busiest, *least_loaded]
    assert skills.select(everyone, spanish, QueueView(options={"max_compared": 3})).id == "r0"
    assert skills.select(everyone, spanish, QueueView(options={"max_compared": 4})) is best_but_busiest
    assert skills.select(everyone, spanish) is best_but_busiest, "the default bound (100) reaches it"


def test_the_walk_stops_at_the_highest_possible_score():
    # The first rep with 10 in every skill asked is taken: none after it can do better, and none
    # after it is read (the same rule as the Lua walk, so a tie with it is never looked for).
    top = rep("top", load=1, skills={"spanish": 10, "billing": 10})
    also_top_but_busier = rep("also", load=2, skills={"spanish": 10, "billing": 10})
    assert skills.select([also_top_but_busier, top], SPANISH_BILLING) is top


def test_explain_names_the_score_the_levels_and_the_load():
    facts = {"score": 17, "top": 20, "levels": [["spanish", 9], ["billing", 8]], "compared": 4,
             "load": 1, "capacity": 4, "idle_ms": 3000, "rule": "rule 2"}
    text = skills.explain(facts)
    assert text.startswith("skills: best score 17 of 20 (spanish 9, billing 8), best of 4 eligible reps compared")
    assert "1 of 4 open before this lead (25%)" in text
    assert "idle 3.0 s" in text


def test_explain_says_when_the_bound_stopped_the_walk_and_when_no_skills_were_asked():
    bounded = skills.explain({"score": 3, "top": 10, "levels": [["spanish", 3]], "compared": 5, "bounded": True,
                              "load": 0, "capacity": 2})
    assert "best of 5 eligible reps compared (at most 5 are compared)" in bounded
    single = skills.explain({"score": 20, "top": 20, "levels": [["a", 10], ["b", 10]], "compared": 1,
                             "load": 0, "capacity": 2})
    assert "best of 1 eligible rep compared" in single
    assert skills.explain({"score": 0, "top": 0, "compared": 1, "load": 2, "capacity": 4}).startswith(
        "skills: the lead asks no skills, so the least loaded eligible rep, 2 of 4 open")


@pytest.mark.parametrize(("value", "words"), [
    (0, "option max_compared is 0; it must be 1..10000"),
    (10_001, "option max_compared is 10001; it must be 1..10000"),
    (2.5, "option max_compared is 2.5; it must be a whole number"),
])
def test_a_bad_max_compared_is_refused_in_words(value, words):
    with pytest.raises(RoutingError) as refused:
        parse_routing(f"queues: {{experts: {{strategy: skills, options: {{max_compared: {value}}}}}}}", "test")
    assert words in str(refused.value)


def test_a_whole_max_compared_is_taken():
    routing = parse_routing("queues: {experts: {strategy: skills, options: {max_compared: 7}}}", "test")
    assert routing.queues[0].options == {"max_compared": 7}
