"""The skills strategy on a real redis-server, with crafted rosters: the best score wins over the
least loaded, the walk stops at the highest possible score and at the queue's max_compared, the
reason names the figures, and parallel decisions never overfill the expert."""

from __future__ import annotations

import asyncio

from tests.dispatcher.state.conftest import lead

ROUTING = """
queues:
  experts: {strategy: skills}
  first_two: {strategy: skills, options: {max_compared: 2}}
rules:
  - {when: {attributes: {q: first_two}}, queue: first_two}
default_queue: experts
"""


async def test_the_best_score_wins_over_the_least_loaded_and_the_reason_names_the_figures(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "novice", capacity=4, skills={"spanish": 3, "billing": 2})
    await rep_factory(store, "expert", capacity=4, skills={"spanish": 9, "billing": 8})
    await rep_factory(store, "linguist", capacity=4, skills={"spanish": 10})
    # No skills asked: all are empty and never assigned, so the first id takes it.
    assert (await store.assign(lead("warm"), "p0@0")).assignment.rep_id == "expert"
    decision = await store.assign(lead("deal", skills=["spanish", "billing"]), "p0@1")
    assert decision.assignment.rep_id == "expert"
    reason = decision.assignment.reason
    assert "skills: best score 17 of 20 (spanish 9, billing 8)" in reason, reason
    assert "best of 2 eligible reps compared, 1 of 4 open before this lead (25%), idle" in reason
    assert reason.endswith("; 1 better-placed reps lacked a required skill or a fresh heartbeat"), "the linguist"


async def test_equal_scores_go_to_the_least_loaded(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=4, skills={"spanish": 7})
    await rep_factory(store, "b", capacity=4, skills={"spanish": 7})
    first = await store.assign(lead(skills=["spanish"]), "p0@0")
    second = await store.assign(lead(skills=["spanish"]), "p0@1")
    assert {first.assignment.rep_id, second.assignment.rep_id} == {"a", "b"}, "the loaded one waits its turn"


async def test_the_walk_stops_at_the_highest_possible_score(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "top-light", capacity=4, skills={"spanish": 10})
    await rep_factory(store, "top-busy", capacity=4, skills={"spanish": 10})
    await rep_factory(store, "mid", capacity=4, skills={"spanish": 5})
    await store.assign(lead("x", skills=["spanish"]), "p0@0")
    await store.assign(lead("y", skills=["spanish"]), "p0@1")
    # Both top reps have one lead now, mid has none: mid is read first, then the first top rep, and
    # the walk stops there without reading the other.
    decision = await store.assign(lead("z", skills=["spanish"]), "p0@2")
    assert decision.assignment.rep_id in {"top-light", "top-busy"}
    assert decision.assignment.facts["compared"] == 2
    assert "best score 10 of 10 (spanish 10), best of 2 eligible reps compared" in decision.assignment.reason


async def test_a_queue_compares_at_most_max_compared_reps(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    for n in range(3):
        await rep_factory(store, f"light{n}", capacity=10, skills={"spanish": 1})
    await rep_factory(store, "best", capacity=10, skills={"spanish": 9})
    for n in range(2):
        assert (await store.assign(lead(skills=["spanish"]), f"p0@{n}")).assignment.rep_id == "best"
    # `best` now sits behind the three empty light reps in the index: first_two compares two of them.
    first_two = {"q": "first_two"}
    bounded = await store.assign(lead("deal", skills=["spanish"], attributes=first_two), "p0@3")
    assert bounded.assignment.rep_id == "light0", "equal scores: the first in index order (idle as long, then id)"
    assert bounded.assignment.facts["compared"] == 2 and bounded.assignment.facts["bounded"] is True
    assert "best score 1 of 10 (spanish 1), best of 2 eligible reps compared (at most 2 are compared)" in (
        bounded.assignment.reason)
    unbounded = await store.assign(lead("deal2", skills=["spanish"]), "p0@4")
    assert unbounded.assignment.rep_id == "best", "the default bound (100) reads the whole queue"
    assert unbounded.assignment.facts["compared"] == 4 and unbounded.assignment.facts["bounded"] is False


async def test_a_lead_asking_no_skills_takes_the_least_loaded(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "expert", capacity=4, skills={"spanish": 10})
    await rep_factory(store, "plain", capacity=4)
    await store.assign(lead("a", skills=["spanish"]), "p0@0")
    decision = await store.assign(lead("b"), "p0@1")
    assert decision.assignment.rep_id == "plain"
    assert "skills: the lead asks no skills, so the least loaded eligible rep" in decision.assignment.reason


async def test_parallel_decisions_fill_the_expert_to_capacity_and_no_further(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "expert", capacity=3, skills={"spanish": 10, "billing": 10})
    await rep_factory(store, "backup", capacity=5, skills={"spanish": 4, "billing": 4})
    decisions = await asyncio.gather(*(store.assign(lead(skills=["spanish", "billing"]), f"p0@{n}")
                                       for n in range(12)))
    by_rep = [d.assignment.rep_id for d in decisions if d.assignment]
    assert by_rep.count("expert") == 3 and by_rep.count("backup") == 5
    assert sum(d.status == "queued" for d in decisions) == 4
    # The expert takes leads while it has room, the backup after it; neither ever beyond capacity.
    assert {rep["id"]: rep["load"] for rep in await store.reps()} == {"expert": 3, "backup": 5}


async def test_a_reassigned_lead_is_routed_again_by_score_never_back(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "expert", capacity=4, skills={"spanish": 10})
    await rep_factory(store, "good", capacity=4, skills={"spanish": 8})
    await rep_factory(store, "weak", capacity=4, skills={"spanish": 2})
    decision = await store.assign(lead("l", skills=["spanish"]), "p0@0")
    assert decision.assignment.rep_id == "expert"
    moved = await store.reassign("l", None)
    assert moved.ok
    record = await store.lead("l")
    assert record["rep_id"] == "good"
    assert record["facts"]["score"] == 8 and record["facts"]["from_rep"] == "expert"
