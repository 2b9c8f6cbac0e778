"""The property that lets strategies stay pure: on random rosters, the rep the Lua step picks from
the ready index is the rep `strategies.policy.choose` picks from plain data, for every strategy."""

from __future__ import annotations

import asyncio
import random

import pytest

from strategies.base import LeadView, RepState
from strategies.filters import Moment
from strategies.policy import STRATEGIES, choose
from tests.dispatcher.state.conftest import lead

ROUTING = """
queues:
  q_load_aware: {strategy: load_aware}
  q_online_now: {strategy: online_now, heartbeat_window_s: 0.25}
  q_priority: {strategy: priority}
rules:
  - {when: {attributes: {q: online_now}}, queue: q_online_now}
  - {when: {attributes: {q: priority}}, queue: q_priority}
default_queue: q_load_aware
"""
SKILLS = ("english", "spanish", "billing")


async def snapshot(store) -> list[RepState]:
    k = store.keys
    states = []
    for rep in await store.reps():
        seen = await store.client.zscore(k.rep_seen, rep["id"])
        last = await store.client.hget(k.rep_last_assigned, rep["id"])
        states.append(
            RepState(
                id=rep["id"],
                load=rep["load"],
                capacity=rep["capacity"],
                status=await store.client.hget(k.rep_status, rep["id"]),
                last_seen_ms=int(seen),
                last_assigned_ms=int(last),
                rank=float(rep["attributes"].get("rank", 0)),
                skills=rep["skills"],
            )
        )
    return states


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("seed", range(6))
async def test_redis_pick_matches_the_pure_rule(store_factory, rep_factory, strategy, seed):
    rng = random.Random(f"{strategy}-{seed}")
    store = await store_factory(ROUTING)
    rep_ids = [f"rep{n:02d}" for n in range(rng.randint(3, 12))]
    for rep_id in rep_ids:
        await rep_factory(
            store,
            rep_id,
            capacity=rng.randint(1, 4),
            skills={skill: rng.randint(1, 10) for skill in SKILLS if rng.random() < 0.6},
            attributes={"rank": rng.choice([0, 1.5, 3, 3, 7, 9.25])},
            status=rng.choice(["online"] * 5 + ["away", "offline"]),
        )
    # Some reps go quiet long enough to fall out of the online-now window, but not the presence TTL.
    await asyncio.sleep(0.3)
    for rep_id in rng.sample(rep_ids, k=len(rep_ids) // 2):
        await store.set_presence(rep_id, "online")
    attributes = {} if strategy == "load_aware" else {"q": strategy}
    for n in range(rng.randint(0, 15)):
        await store.assign(lead(attributes=attributes), f"warmup@{n}")
        await asyncio.sleep(0.001)

    for n in range(8):
        required = tuple(skill for skill in SKILLS if rng.random() < 0.25)
        queue = store.routing.queues[[q.strategy for q in store.routing.queues].index(strategy)]
        before = await snapshot(store)
        now_s, now_us = await store.client.time()
        moment = Moment(now_s * 1000 + now_us // 1000, store.presence_ttl_ms, queue.heartbeat_window_ms)
        expected = choose(strategy, before, LeadView(f"probe{n}", skills=required), moment)
        decision = await store.assign(lead(f"probe{n}", skills=list(required), attributes=attributes), f"probe@{n}")
        picked = decision.assignment.rep_id if decision.assignment else None
        assert picked == (expected.id if expected else None), (strategy, before, required)


STICKY_STRATEGIES = ("load_aware", "online_now", "priority")
STICKY_ROUTING = "queues:\n" + "".join(
    f"  s_{name}: {{strategy: {name}, sticky: {{field: customer_id, wait_s: 0}}}}\n" for name in STICKY_STRATEGIES
) + "rules:\n" + "".join(f"  - {{when: {{attributes: {{q: {name}}}}}, queue: s_{name}}}\n" for name in STICKY_STRATEGIES)


@pytest.mark.parametrize("strategy", STICKY_STRATEGIES)
@pytest.mark.parametrize("seed", range(4))
async def test_a_sticky_queue_picks_the_owner_when_the_pure_filters_pass_it(store_factory, rep_factory, strategy, seed):
    """Model: the customer's last rep if the strategy's filters let it through alone, else the
    strategy's own pick over everyone (wait_s 0, so nothing is held)."""
    rng = random.Random(f"sticky-{strategy}-{seed}")
    store = await store_factory(STICKY_ROUTING)
    rep_ids = [f"rep{n:02d}" for n in range(rng.randint(3, 10))]
    for rep_id in rep_ids:
        await rep_factory(store, rep_id, capacity=rng.randint(1, 3),
                          skills={skill: 5 for skill in SKILLS if rng.random() < 0.6},
                          attributes={"rank": rng.choice([0, 3, 7])}, status=rng.choice(["online"] * 4 + ["away"]))
    await asyncio.sleep(0.3)
    for rep_id in rng.sample(rep_ids, k=len(rep_ids) // 2):
        await store.set_presence(rep_id, "online")
    attributes = {"q": strategy}
    for n in range(rng.randint(3, 12)):
        await store.assign(lead(customer_id=f"c{rng.randint(0, 4)}", attributes=attributes), f"warmup@{n}")
    queue = store.routing.by_name[f"s_{strategy}"]
    for n in range(8):
        required = tuple(skill for skill in SKILLS if rng.random() < 0.25)
        customer = f"c{rng.randint(0, 5)}"
        before = await snapshot(store)
        owner = await store.client.hget(store.keys.owners, f"customer_id={customer}")
        now_s, now_us = await store.client.time()
        moment = Moment(now_s * 1000 + now_us // 1000, store.presence_ttl_ms, queue.heartbeat_window_ms)
        probe = LeadView(f"probe{n}", skills=required)
        owner_state = [rep for rep in before if rep.id == owner]
        expected = choose(strategy, owner_state, probe, moment) or choose(strategy, before, probe, moment)
        decision = await store.assign(lead(f"probe{n}", skills=list(required), customer_id=customer,
                                           attributes=attributes), f"probe@{n}")
        picked = decision.assignment.rep_id if decision.assignment else None
        assert picked == (expected.id if expected else None), (strategy, owner, before, required)
        if decision.assignment and owner:
            went_back = picked == owner and bool(owner_state and choose(strategy, owner_state, probe, moment))
            assert ("back to its last rep" in decision.assignment.reason) == went_back
            assert await store.client.hget(store.keys.owners, f"customer_id={customer}") == picked
