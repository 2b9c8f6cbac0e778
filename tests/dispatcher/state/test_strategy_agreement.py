"""The property that lets strategies stay pure: on random rosters, the rep the Lua step picks from
the ready index is the rep `strategies.policy.choose` picks from plain data, for every strategy
(given what the queue's strategy remembers: its state HASH). A random draw is held to the eligible
reps the pure filters name; its uniformity is test_rotation's."""

from __future__ import annotations

import asyncio
import random

import pytest

from strategies.base import LeadView, QueueView, RepState
from strategies.filters import Moment, pipeline
from strategies.policy import STRATEGIES, choose
from tests.dispatcher.state.conftest import lead

# One queue per strategy, chosen by the lead's attribute q, and a skills queue whose bound is met;
# online_now's window is short enough for some reps to fall out of it during the test.
QUEUES = {**{f"q_{name}": name for name in sorted(STRATEGIES)}, "q_skills_bounded": "skills"}
QUEUE_OPTIONS = {"q_online_now": ", heartbeat_window_s: 0.25", "q_skills_bounded": ", options: {max_compared: 2}"}
ROUTING = "queues:\n" + "".join(
    f"  {queue}: {{strategy: {strategy}{QUEUE_OPTIONS.get(queue, '')}}}\n" for queue, strategy in QUEUES.items()
) + "rules:\n" + "".join(
    f"  - {{when: {{attributes: {{q: {queue}}}}}, queue: {queue}}}\n" for queue in QUEUES
) + "default_queue: q_load_aware\n"
OUTCOMES = ("won", "lost", "no_answer")
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
                weight=float(rep["attributes"].get("weight", 1)),
            )
        )
    return states


@pytest.mark.parametrize("queue_name", sorted(QUEUES))
@pytest.mark.parametrize("seed", range(6))
async def test_redis_pick_matches_the_pure_rule(store_factory, rep_factory, queue_name, seed):
    rng = random.Random(f"{queue_name}-{seed}")
    store = await store_factory(ROUTING)
    queue, strategy = store.routing.by_name[queue_name], QUEUES[queue_name]
    rep_ids = [f"rep{n:02d}" for n in range(rng.randint(3, 12))]
    for rep_id in rep_ids:
        await rep_factory(
            store,
            rep_id,
            capacity=rng.randint(1, 4),
            skills={skill: rng.randint(1, 10) for skill in SKILLS if rng.random() < 0.6},
            attributes={"rank": rng.choice([0, 1.5, 3, 3, 7, 9.25]), "weight": rng.choice([0.5, 1, 1, 2, 3.5])},
            status=rng.choice(["online"] * 5 + ["away", "offline"]),
        )
    # Some reps go quiet long enough to fall out of the online-now window, but not the presence TTL.
    await asyncio.sleep(0.3)
    for rep_id in rng.sample(rep_ids, k=len(rep_ids) // 2):
        await store.set_presence(rep_id, "online")
    attributes = {"q": queue_name}
    warmup = []
    for n in range(rng.randint(0, 15)):
        warmup.append(await store.assign(lead(attributes=attributes), f"warmup@{n}"))
        await asyncio.sleep(0.001)
    # Closes free room (reps re-enter the index, waiting leads drain) and give reps outcomes.
    for decision in rng.sample(warmup, k=len(warmup) // 3):
        await store.close(decision.lead_id, rng.choice(OUTCOMES))

    for n in range(8):
        required = tuple(skill for skill in SKILLS if rng.random() < 0.25)
        before = await snapshot(store)
        now_s, now_us = await store.client.time()
        moment = Moment(now_s * 1000 + now_us // 1000, store.presence_ttl_ms, queue.heartbeat_window_ms)
        view = QueueView(queue.name, queue.options, await store.client.hgetall(store.keys.queue_state(queue.name)))
        probe = LeadView(f"probe{n}", skills=required)
        expected = choose(strategy, before, probe, moment, view)
        decision = await store.assign(lead(f"probe{n}", skills=list(required), attributes=attributes), f"probe@{n}")
        picked = decision.assignment.rep_id if decision.assignment else None
        if STRATEGIES[strategy].walk == "random":
            eligible = before
            for step in pipeline(STRATEGIES[strategy].filters):
                eligible = step(eligible, probe, moment)
            assert (picked is None) == (expected is None), (strategy, before, required)
            assert picked is None or picked in {rep.id for rep in eligible}, (strategy, before, required)
        else:
            assert picked == (expected.id if expected else None), (strategy, view.state, before, required)


# Every strategy but random, whose pick the model cannot foresee.
STICKY_STRATEGIES = tuple(name for name, declared in sorted(STRATEGIES.items()) if declared.walk != "random")
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
        owner = ((await store.client.hget(store.keys.owners, f"customer_id={customer}")) or "").split("|")[0] or None
        now_s, now_us = await store.client.time()
        moment = Moment(now_s * 1000 + now_us // 1000, store.presence_ttl_ms, queue.heartbeat_window_ms)
        probe = LeadView(f"probe{n}", skills=required)
        owner_state = [rep for rep in before if rep.id == owner]
        view = QueueView(queue.name, queue.options, await store.client.hgetall(store.keys.queue_state(queue.name)))
        expected = choose(strategy, owner_state, probe, moment, view) or choose(strategy, before, probe, moment, view)
        decision = await store.assign(lead(f"probe{n}", skills=list(required), customer_id=customer,
                                           attributes=attributes), f"probe@{n}")
        picked = decision.assignment.rep_id if decision.assignment else None
        assert picked == (expected.id if expected else None), (strategy, owner, before, required)
        if decision.assignment and owner:
            went_back = picked == owner and bool(owner_state and choose(strategy, owner_state, probe, moment, view))
            assert ("back to its last rep" in decision.assignment.reason) == went_back
            assert await store.client.hget(store.keys.owners, f"customer_id={customer}") == f"{picked}|probe{n}"
