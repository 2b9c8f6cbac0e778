"""The policy: names resolve to strategies, and `choose` applies every filter, then the selector."""

from __future__ import annotations

import itertools

import pytest

from strategies import (
    filters,
    load_aware,
    online_now,
    performance,
    policy,
    pool,
    priority,
    random_pick,
    round_robin,
    skills,
    weighted,
)
from strategies.base import ORDER_CODES, LeadView, QueueView, RepState, pass_of

NOW = 1_000_000
MOMENT = filters.Moment(now_ms=NOW, presence_ttl_ms=60_000)
LEAD = LeadView("l")


def rep(rep_id: str, **fields) -> RepState:
    defaults = {"load": 0, "capacity": 4, "status": "online", "last_seen_ms": NOW - 1_000}
    return RepState(id=rep_id, **{**defaults, **fields})


def test_the_registry_holds_every_strategy_and_load_aware_is_the_default():
    modules = (load_aware, online_now, priority, round_robin, weighted, random_pick, performance, skills, pool)
    assert policy.STRATEGIES == {m.STRATEGY.name: m.STRATEGY for m in modules}
    assert policy.DEFAULT_STRATEGY == "load_aware"
    for name, declared in policy.STRATEGIES.items():
        assert policy.strategy(name) is declared


@pytest.mark.parametrize("name", ["nope", "", "Load_Aware", "round-robin"])
def test_an_unknown_strategy_names_itself_and_the_known_ones(name):
    with pytest.raises(ValueError) as refused:
        policy.strategy(name)
    message = str(refused.value)
    assert f"unknown strategy {name!r}" in message
    assert ("known strategies: load_aware, online_now, performance, pool, priority, random, round_robin, skills, "
            "weighted" in message)


def test_choose_refuses_an_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        policy.choose("nope", [rep("a")], LEAD, MOMENT)


# Each of these would be the load-aware pick (idle longest, empty) if it were eligible.
INELIGIBLE = {
    "away": rep("away", status="away"),
    "offline": rep("offline", status="offline"),
    "silent": rep("silent", last_seen_ms=NOW - 60_001),
    "full": rep("full", load=4, last_assigned_ms=0),
    "no-skill": rep("no-skill", skills={"english": 9}),
}
ELIGIBLE = rep("ok", load=3, last_assigned_ms=900, skills={"spanish": 1})
SPANISH = LeadView("l", skills=("spanish",))


PICKING = sorted(name for name, declared in policy.STRATEGIES.items() if declared.walk != "pool")


@pytest.mark.parametrize("strategy_name", PICKING)
def test_choose_applies_every_filter_before_the_selector(strategy_name):
    everyone = [*INELIGIBLE.values(), ELIGIBLE]
    assert policy.choose(strategy_name, everyone, SPANISH, MOMENT) is ELIGIBLE
    assert policy.choose(strategy_name, list(INELIGIBLE.values()), SPANISH, MOMENT) is None
    assert policy.choose(strategy_name, [], SPANISH, MOMENT) is None


def test_the_pool_strategy_picks_nobody_so_reps_claim():
    assert policy.choose("pool", [*INELIGIBLE.values(), ELIGIBLE], SPANISH, MOMENT) is None
    facts = {"claimed_by": "ann", "pool_queue": "open", "pooled_ms": 1500, "rule": "default"}
    # Whatever the queue's strategy: a claim is the rep's choice.
    for name in ("pool", "load_aware"):
        assert policy.reason("open", name, facts) == ("no rule matched, so the default queue open; claimed from the "
                                                      "pool of queue open by rep ann, pooled 1.5 s")


@pytest.mark.parametrize("name", sorted(INELIGIBLE))
def test_each_filter_alone_keeps_a_rep_out(name):
    assert policy.choose("load_aware", [INELIGIBLE[name]], SPANISH, MOMENT) is None


def test_choose_applies_the_queue_heartbeat_window():
    stale = rep("stale", last_seen_ms=NOW - 20_000, last_assigned_ms=0)
    fresh = rep("fresh", last_seen_ms=NOW - 1_000, last_assigned_ms=500)
    windowed = filters.Moment(NOW, 60_000, heartbeat_window_ms=15_000)
    assert policy.choose("online_now", [stale, fresh], LEAD, windowed) is fresh
    assert policy.choose("online_now", [stale, fresh], LEAD, MOMENT) is stale


def test_choose_then_selects_by_the_named_strategy():
    light_recent = rep("light", load=0, last_assigned_ms=900, rank=1)
    busy_idle = rep("idle", load=2, last_assigned_ms=10, rank=2)
    ranked_busiest = rep("ranked", load=3, last_assigned_ms=500, rank=9)
    reps = [light_recent, busy_idle, ranked_busiest]
    assert policy.choose("load_aware", reps, LEAD, MOMENT) is light_recent
    assert policy.choose("online_now", reps, LEAD, MOMENT) is busy_idle
    assert policy.choose("priority", reps, LEAD, MOMENT) is ranked_busiest


def test_priority_passes_over_a_full_top_ranked_rep():
    top_full = rep("top", load=4, rank=9)
    second = rep("second", load=3, rank=5)
    assert policy.choose("priority", [top_full, second, rep("third", rank=1)], LEAD, MOMENT) is second


def test_explain_delegates_to_the_named_strategy():
    facts = {"load": 1, "capacity": 2, "rank": 3, "idle_ms": 100}
    for name, module in policy.STRATEGIES.items():
        assert policy.explain(name, facts) == module.explain(facts)
    assert policy.explain("load_aware", facts) != policy.explain("priority", facts)


def _index_member(order: tuple[str, ...], r: RepState, queue: QueueView) -> str:
    """The ready-index member exactly as lib.lua's member_for writes it (sorted lexically)."""
    parts = []
    for name in order:
        code = ORDER_CODES[name]
        if code == "p":
            parts.append(f"{pass_of(queue, r.id, LEAD.channel):016d}")
        elif code == "u":
            parts.append(f"{r.load * 1_000_000_000 // r.capacity:010d}")
        elif code == "l":
            parts.append(f"{r.last_assigned_ms:014d}")
        elif code == "r":
            parts.append(f"{1_000_000 - int(r.rank * 1000):07d}")
    return "|".join([*parts, r.id])


ROSTER = [
    RepState(id=f"r{i}", load=load, capacity=cap, last_assigned_ms=last, rank=rank)
    for i, (load, cap, last, rank) in enumerate(
        itertools.product([0, 1, 2], [3, 6], [0, 100, 1_700_000_000_000], [0, 2.5, 9])
    )
]


# Passes as a weighted queue stores them: some reps behind the virtual time, some tied, some unset.
TURNS = QueueView("q", state={f"vt|{LEAD.channel}": "2000000", "vt": "9000000", **{f"pass|r{i}": str((i * 7 % 5) * 900_000) for i in range(0, 40, 3)}})


@pytest.mark.parametrize("module", [load_aware, online_now, priority, round_robin, weighted, performance, skills])
@pytest.mark.parametrize("queue", [QueueView(), TURNS])
def test_select_agrees_with_the_declared_index_order(module, queue):
    """For a first walk, the index order; for round robin's cycle walk, too, until a cursor is set."""
    for size in (1, 2, 5, len(ROSTER)):
        for start in range(0, len(ROSTER), 7):
            candidates = (ROSTER[start:] + ROSTER[:start])[:size]
            by_index = min(candidates, key=lambda r: _index_member(module.STRATEGY.order, r, queue))
            assert module.select(candidates, LEAD, queue) is by_index
