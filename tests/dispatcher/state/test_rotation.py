"""round_robin, weighted, random and performance on real redis, with crafted rosters: the place
in the rotation through restarts, roster changes, absent reps, closes and drains; weighted shares
and smoothness; uniform draws; conversion-weighted shares with the prior."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dispatcher.check import check_workspace
from dispatcher.state.store import Store
from strategies import performance
from strategies.base import OUTCOME_DAYS, stride
from tests.dispatcher.state.conftest import lead

ROUTING = """
queues:
  rr: {strategy: round_robin, members: {teams: [sales]}}
  wt: {strategy: weighted}
  rnd: {strategy: random}
  perf: {strategy: performance, options: {window_days: 30, prior_rate: 0.2, prior_leads: 10}}
rules:
  - {when: {attributes: {q: wt}}, queue: wt}
  - {when: {attributes: {q: rnd}}, queue: rnd}
  - {when: {attributes: {q: perf}}, queue: perf}
default_queue: rr
"""


async def roster(rep_factory, store: Store, reps: Sequence[str], **fields: Any) -> None:
    for rep_id in reps:
        await rep_factory(store, rep_id, **{"capacity": 100, "teams": ["sales"], **fields})


async def send(store: Store, count: int, queue: str = "rr", **fields: Any) -> list[str | None]:
    """Decides `count` leads one after the other; the reps they went to (None: queued)."""
    picked = []
    attributes = {} if queue == "rr" else {"q": queue}
    for _ in range(count):
        decision = await store.assign(lead(attributes=attributes, **fields), "test")
        picked.append(decision.assignment.rep_id if decision.assignment else None)
    return picked


# --- round robin ---------------------------------------------------------------------------

async def test_round_robin_takes_reps_in_id_order_and_wraps(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["c", "a", "b"])
    decisions = [await store.assign(lead(), "test") for _ in range(7)]
    assert [d.assignment.rep_id for d in decisions] == ["a", "b", "c", "a", "b", "c", "a"]
    assert decisions[0].assignment.reason == "no rule matched, so the default queue rr; round robin: first turn of the rotation"
    assert decisions[4].assignment.reason == "no rule matched, so the default queue rr; round robin: next in turn after a"


async def test_round_robin_keeps_its_place_through_a_restart(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "b", "c", "d"])
    assert await send(store, 2) == ["a", "b"]
    # A new worker: a Store of its own on the same redis and workspace.
    restarted = Store(store.client, store.keys, store.routing, store.presence_ttl_ms / 1000)
    assert await send(restarted, 3) == ["c", "d", "a"]


async def test_round_robin_through_roster_changes(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "b", "c", "d"])
    assert await send(store, 2) == ["a", "b"]
    # A rep joining mid-rotation takes its turn where its id falls, without resetting it.
    await roster(rep_factory, store, ["bb"])
    assert await send(store, 1) == ["bb"]
    # c leaves the queue (no longer in the team): the rotation goes on past it.
    await rep_factory(store, "c", capacity=100, teams=["support"])
    assert await send(store, 3) == ["d", "a", "b"]
    # The rep served last leaves: the rotation still resumes after its id.
    await rep_factory(store, "b", capacity=100, teams=["support"])
    assert await send(store, 3) == ["bb", "d", "a"]


async def test_round_robin_skips_absent_reps_without_moving_back(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "b", "c", "d"])
    assert await send(store, 1) == ["a"]
    await store.set_presence("b", "away")
    assert await send(store, 1) == ["c"]
    # b is back: its turn comes round again, the rotation does not return to it first.
    await store.set_presence("b", "online")
    assert await send(store, 3) == ["d", "a", "b"]


async def test_round_robin_skips_a_rep_lacking_a_skill_and_says_so(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "c"], skills={"spanish": 5})
    await roster(rep_factory, store, ["b"])
    assert await send(store, 1) == ["a"]
    decision = await store.assign(lead(skills=["spanish"]), "test")
    assert decision.assignment.rep_id == "c"
    assert decision.assignment.reason == ("no rule matched, so the default queue rr; round robin: next in turn after a; "
                                          "1 better-placed reps lacked a required skill or a fresh heartbeat")
    assert await send(store, 2) == ["a", "b"]


async def test_round_robin_closes_and_drains_do_not_move_the_rotation(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "b", "c"], capacity=1)
    first = [await store.assign(lead(f"rr-{n}"), "test") for n in range(3)]
    assert [d.assignment.rep_id for d in first] == ["a", "b", "c"]
    waiting = await store.assign(lead("rr-waits"), "test")
    assert waiting.status == "queued"
    # b frees room and takes the waiting lead: a drain, not b's turn.
    closed = await store.close("rr-1", "won")
    assert [a.rep_id for a in closed.assignments] == ["b"]
    await store.close("rr-0", "lost")
    await store.close("rr-2", "lost")
    # The rotation last served c: a is next, although b took a lead since.
    assert await send(store, 1) == ["a"]


async def test_round_robin_with_one_rep_serves_it_every_time(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["solo"])
    assert await send(store, 3) == ["solo", "solo", "solo"]


async def test_parallel_assigns_on_round_robin_give_each_rep_exactly_one(store_factory, rep_factory):
    store = await store_factory(ROUTING, pool_size=40)
    reps = [f"r{n:02d}" for n in range(6)]
    await roster(rep_factory, store, reps, capacity=1)
    other = Store(store.client, store.keys, store.routing, store.presence_ttl_ms / 1000)
    decisions = await asyncio.gather(*(
        (store if n % 2 else other).assign(lead(f"par-{n}"), f"test@{n}") for n in range(30)))
    winners = [d.assignment.rep_id for d in decisions if d.assignment]
    assert sorted(winners) == reps
    assert sum(d.status == "queued" for d in decisions) == 30 - len(reps)


# --- weighted ----------------------------------------------------------------------------

def stride_schedule(weights: dict[str, float], count: int) -> list[str]:
    """The pure model of weighted turns over reps that stay ready: lowest pass, then id."""
    passes = dict.fromkeys(weights, 0)
    order = []
    for _ in range(count):
        rep = min(passes, key=lambda r: (passes[r], r))
        passes[rep] += stride(weights[rep])
        order.append(rep)
    return order


async def test_weighted_1_to_2_over_5_leads_gives_2_and_3_never_two_in_a_row_to_the_lighter(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "light", capacity=100, attributes={"weight": 1})
    await rep_factory(store, "heavy", capacity=100, attributes={"weight": 2})
    picked = await send(store, 5, "wt")
    assert Counter(picked) == {"light": 2, "heavy": 3}
    assert ("light", "light") not in itertools.pairwise(picked)
    more = await send(store, 25, "wt")
    assert Counter(picked + more) == {"light": 10, "heavy": 20}
    assert picked + more == stride_schedule({"light": 1, "heavy": 2}, 30)


async def test_weighted_shares_follow_uneven_weights(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    weights = {"w1": 1, "w2": 2.5, "w3": 0.5, "w4": 7}
    for rep_id, weight in weights.items():
        await rep_factory(store, rep_id, capacity=500, attributes={"weight": weight})
    picked = await send(store, 110, "wt")
    assert picked == stride_schedule(weights, 110)
    assert Counter(picked) == {"w1": 10, "w2": 25, "w3": 5, "w4": 70}


async def test_weighted_reason_names_the_weight(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=10, attributes={"weight": 2})
    await rep_factory(store, "b", capacity=10, attributes={"weight": 1})
    reasons = [(await store.assign(lead(attributes={"q": "wt"}), "t")).assignment.reason for _ in range(3)]
    assert reasons[0] == ("rule 1 sent it to queue wt; weighted: weight 2, furthest behind its share among reps "
                          "with room (0.00 weighted leads served before this one)")
    assert reasons[2] == ("rule 1 sent it to queue wt; weighted: weight 2, furthest behind its share among reps "
                          "with room (0.50 weighted leads served before this one)")


async def test_a_weighted_rep_back_from_away_gets_no_burst(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "x", capacity=100)
    await rep_factory(store, "y", capacity=100)
    assert Counter(await send(store, 10, "wt")) == {"x": 5, "y": 5}
    await store.set_presence("x", "away")
    assert Counter(await send(store, 20, "wt")) == {"y": 20}
    await store.set_presence("x", "online")
    back = await send(store, 10, "wt")
    # Without catching up to the queue's virtual time x would take all ten.
    assert 4 <= Counter(back)["x"] <= 6, back


async def test_a_weighted_rep_freed_from_full_starts_level(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "x", capacity=5)
    await rep_factory(store, "y", capacity=100)
    picked = [await store.assign(lead(f"wf-{n}", attributes={"q": "wt"}), "t") for n in range(40)]
    assert Counter(d.assignment.rep_id for d in picked) == {"x": 5, "y": 35}
    for decision in picked:
        if decision.assignment.rep_id == "x":
            await store.close(decision.lead_id, "won")
    back = await send(store, 6, "wt")
    # Behind by 30 leads, x would take all five it has room for in a row.
    assert back == ["x", "x", "y", "x", "y", "x"]



# A weighted queue over two channels: a walk for a web lead meets the '*' and web indexes only.
TWO_CHANNELS = "channels: [web, chat]\nqueues:\n  wt: {strategy: weighted}\n"


async def test_a_rep_only_chat_walks_meet_is_not_left_behind_by_web_turns(stack, store_factory, rep_factory):
    store = await store_factory(TWO_CHANNELS)
    await rep_factory(store, "a", capacity={"chat": 1, "web": 0})
    await rep_factory(store, "b", capacity=10)
    for n in range(3):
        assert (await store.assign(lead(f"w{n}"), f"p@{n}")).assignment.rep_id == "b"
    state = await store.client.hgetall(store.keys.queue_state("wt"))
    # a waits in the chat index at pass 0, level with the chat turns (none yet), not the web ones.
    assert (state["vt|web"], state["vt"], state.get("vt|chat")) == ("2000000", "2000000", None)
    report = check_workspace(stack.redis_url, store.keys.workspace, store.routing, 60.0)
    assert report.ok, "\n".join(report.lines())


async def test_a_chat_turn_does_not_let_a_rep_back_from_away_burst_on_web(store_factory, rep_factory):
    store = await store_factory(TWO_CHANNELS)
    await rep_factory(store, "a", capacity={"chat": 5, "web": 0})
    await rep_factory(store, "x", capacity=100)
    await rep_factory(store, "y", capacity=100)
    assert Counter(await send(store, 10, "wt")) == {"x": 5, "y": 5}
    await store.set_presence("x", "away")
    assert Counter(await send(store, 10, "wt")) == {"y": 10}
    # a, at pass 0, takes the chat lead: that walk's virtual time is 0, the web walks' is not.
    assert await send(store, 1, "wt", channel="chat") == ["a"]
    await store.set_presence("x", "online")
    back = await send(store, 10, "wt")
    # Caught up to a virtual time of 0, x would take all ten.
    assert 4 <= Counter(back)["x"] <= 6, back


# --- random --------------------------------------------------------------------------------

def chi2_sf_even(statistic: float, df: int) -> float:
    """P(chi-square with an even df >= statistic), in closed form."""
    half = statistic / 2
    return math.exp(-half) * sum(half ** i / math.factorial(i) for i in range(df // 2))


def assert_uniform(counts: Counter, categories: Sequence[str], total: int) -> None:
    """Chi-square at p = 1e-6: a fair draw fails this about once in a million runs."""
    expected = total / len(categories)
    statistic = sum((counts[c] - expected) ** 2 / expected for c in categories)
    assert chi2_sf_even(statistic, len(categories) - 1) > 1e-6, counts


async def test_random_is_uniform_among_eligible_reps(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    eligible = ["e1", "e2", "e3", "e4", "e5"]
    await roster(rep_factory, store, eligible, capacity=1000)
    await rep_factory(store, "away", capacity=1000, status="away")
    await rep_factory(store, "full", capacity=0)
    picked = await send(store, 500, "rnd")
    assert set(picked) <= set(eligible)
    assert_uniform(Counter(picked), eligible, 500)


async def test_random_draws_among_the_few_who_have_the_skill(store_factory, rep_factory):
    """Most ready reps lack the skill: the draw falls back to listing the eligible ones."""
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, [f"n{n:02d}" for n in range(30)], capacity=1000)
    skilled = ["s1", "s2", "s3"]
    await roster(rep_factory, store, skilled, capacity=1000, skills={"german": 3})
    picked = await send(store, 300, "rnd", skills=["german"])
    assert set(picked) <= set(skilled)
    assert_uniform(Counter(picked), skilled, 300)
    decision = await store.assign(lead(attributes={"q": "rnd"}), "t")
    assert decision.assignment.reason == ("rule 2 sent it to queue rnd; random: a uniform draw among the reps who "
                                          "could take it (33 in the queue's ready list)")


async def test_random_with_nobody_eligible_queues_the_lead(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await roster(rep_factory, store, ["a", "b"], capacity=1000)
    assert await send(store, 2, "rnd", skills=["klingon"]) == [None, None]


# --- performance ---------------------------------------------------------------------------

async def close_with(store: Store, rep_id: str, outcomes: Sequence[str]) -> None:
    """Gives the rep one lead per outcome (a supervisor's move) and closes each with it."""
    for n, outcome in enumerate(outcomes):
        lead_id = f"{rep_id}-past-{n}"
        await store.assign(lead(lead_id, attributes={"q": "wt"}), "t")
        moved = await store.reassign(lead_id, rep_id)
        assert moved.code in ("ok", "conflict"), moved.detail
        assert (await store.close(lead_id, outcome)).code == "ok"


async def test_performance_favours_the_better_converter_and_feeds_a_new_rep(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "good", capacity=1000)
    await rep_factory(store, "poor", capacity=1000)
    await close_with(store, "good", ["won"] * 6 + ["lost"] * 4)
    await close_with(store, "poor", ["won"] + ["no_answer"] * 9)
    await rep_factory(store, "new", capacity=1000)
    options = {"window_days": 30, "prior_rate": 0.2, "prior_leads": 10}
    weights = {"good": performance.conversion(6, 10, options), "poor": performance.conversion(1, 10, options),
               "new": performance.conversion(0, 0, options)}
    assert weights == {"good": 0.4, "poor": 0.15, "new": 0.2}
    decisions = [await store.assign(lead(attributes={"q": "perf"}), "t") for _ in range(30)]
    picked = [d.assignment.rep_id for d in decisions]
    # The weights stay as they are while none of these leads closes: the schedule is the model's.
    assert picked == stride_schedule(weights, 30)
    counts = Counter(picked)
    assert counts["good"] > counts["new"] > counts["poor"] > 0
    reasons = {d.assignment.rep_id: d.assignment.reason for d in decisions}
    assert reasons["good"].startswith("rule 3 sent it to queue perf; performance: 6 won of 10 closed in 30 days, "
                                      "40% with the prior; ")
    assert "performance: 0 won of 0 closed in 30 days, 20% with the prior" in reasons["new"]


async def test_performance_counts_only_closes_of_assigned_leads_in_the_window(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=1000)
    await close_with(store, "a", ["won", "lost"])
    # A lead closed while it waited (nobody had the skill) is nobody's outcome.
    await store.assign(lead("waiting", skills=["klingon"], attributes={"q": "wt"}), "t")
    await store.close("waiting", "won")
    k = store.keys
    today = int(await store.now_ms()) // 86_400_000
    # Counts from before the window: they must not count.
    await store.client.hset(k.outcomes, mapping={f"a|{today - 30}|closed": 50, f"a|{today - 30}|won": 50,
                                                 "a|since": today - 30})
    decision = await store.assign(lead(attributes={"q": "perf"}), "t")
    assert "performance: 1 won of 2 closed in 30 days, 25% with the prior" in decision.assignment.reason


async def test_close_outcomes_older_than_the_longest_window_are_pruned(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=10)
    k = store.keys
    today = int(await store.now_ms()) // 86_400_000
    old = today - OUTCOME_DAYS - 20
    await store.client.hset(k.outcomes, mapping={
        f"a|{old}|closed": 4, f"a|{old}|won": 1, f"a|{old + 25}|closed": 2, "a|since": old})
    await close_with(store, "a", ["won"])
    outcomes = await store.client.hgetall(k.outcomes)
    assert outcomes == {f"a|{old + 25}|closed": "2", f"a|{today}|closed": "1", f"a|{today}|won": "1",
                        "a|since": str(today - OUTCOME_DAYS + 1)}
