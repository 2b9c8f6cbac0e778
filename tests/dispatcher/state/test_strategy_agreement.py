"""The property that lets strategies stay pure: on random rosters, the rep the Lua step picks from
the ready index is the rep `strategies.policy.choose` picks from plain data, for every strategy."""

from __future__ import annotations

import asyncio
import random

import pytest

from dispatcher.routing import parse_routing
from strategies.base import LeadView, QueueView, RepState
from strategies.filters import Moment
from strategies.policy import STRATEGIES, choose
from tests.dispatcher.state.conftest import lead

ROUTING = """
queues:
  q_load_aware: {strategy: load_aware}
  q_online_now: {strategy: online_now, heartbeat_window_s: 0.25}
  q_priority: {strategy: priority}
  q_skills: {strategy: skills}
  q_skills_bounded: {strategy: skills, options: {max_compared: 2}}
rules:
  - {when: {attributes: {q: online_now}}, queue: q_online_now}
  - {when: {attributes: {q: priority}}, queue: q_priority}
  - {when: {attributes: {q: skills}}, queue: q_skills}
  - {when: {attributes: {q: skills_bounded}}, queue: q_skills_bounded}
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


# The attributes that route a lead to each queue of ROUTING (rules above).
QUEUES = {"q_load_aware": {}, "q_online_now": {"q": "online_now"}, "q_priority": {"q": "priority"},
          "q_skills": {"q": "skills"}, "q_skills_bounded": {"q": "skills_bounded"}}


def test_every_strategy_has_a_queue_here():
    strategies = {queue.strategy for queue in parse_routing(ROUTING, "test").queues}
    assert strategies == set(STRATEGIES)
    assert set(QUEUES) == {queue.name for queue in parse_routing(ROUTING, "test").queues}


@pytest.mark.parametrize("queue_name", sorted(QUEUES))
@pytest.mark.parametrize("seed", range(6))
async def test_redis_pick_matches_the_pure_rule(store_factory, rep_factory, queue_name, seed):
    rng = random.Random(f"{queue_name}-{seed}")
    store = await store_factory(ROUTING)
    queue = next(queue for queue in store.routing.queues if queue.name == queue_name)
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
    attributes = QUEUES[queue_name]
    for n in range(rng.randint(0, 15)):
        await store.assign(lead(attributes=attributes), f"warmup@{n}")
        await asyncio.sleep(0.001)

    for n in range(8):
        required = tuple(skill for skill in SKILLS if rng.random() < 0.25)
        before = await snapshot(store)
        now_s, now_us = await store.client.time()
        moment = Moment(now_s * 1000 + now_us // 1000, store.presence_ttl_ms, queue.heartbeat_window_ms)
        expected = choose(queue.strategy, before, LeadView(f"probe{n}", skills=required), moment,
                          QueueView(queue.name, queue.options))
        decision = await store.assign(lead(f"probe{n}", skills=list(required), attributes=attributes), f"probe@{n}")
        picked = decision.assignment.rep_id if decision.assignment else None
        assert picked == (expected.id if expected else None), (queue_name, before, required)
