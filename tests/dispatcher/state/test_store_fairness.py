"""Fairness over the assignment log on a real redis-server: per queue, assignments per rep (members
with none count 0), spread and Gini over a window; the log is trimmed to the retention."""

from __future__ import annotations

import asyncio

from dispatcher.fairness import gini
from tests.dispatcher.state.conftest import lead

ROUTING = """
queues:
  sales: {strategy: load_aware, members: {teams: [sales]}}
  support: {strategy: load_aware, members: {teams: [support]}}
rules:
  - {when: {attributes: {q: support}}, queue: support}
default_queue: sales
"""
SUPPORT = {"q": "support"}


async def test_assignments_per_rep_per_queue_with_idle_members_at_zero(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=10, teams=["sales"])
    await rep_factory(store, "b", capacity=10, teams=["sales", "support"])
    await rep_factory(store, "idle", capacity=10, teams=["sales"], status="offline")
    for n in range(4):
        await store.assign(lead(), f"p0@{n}")
    await store.assign(lead(attributes=SUPPORT), "p0@9")
    sales, support = await store.fairness(3600)
    assert sales == {"queue": "sales", "strategy": "load_aware", "window_s": 3600, "assignments": 4,
                     "reps": {"a": 2, "b": 2, "idle": 0}, "spread": 2, "gini": round(gini([2, 2, 0]), 4)}
    assert support["reps"] == {"b": 1} and support["assignments"] == 1 and support["gini"] == 0.0


async def test_a_rep_that_left_the_queue_still_counts_for_the_window(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=10, teams=["sales"])
    await rep_factory(store, "gone", capacity=10, teams=["sales"])
    for n in range(4):
        await store.assign(lead(), f"p0@{n}")
    await rep_factory(store, "gone", capacity=10, teams=["support"])
    sales, support = await store.fairness(3600)
    assert sales["reps"] == {"a": 2, "gone": 2}
    assert support["reps"] == {"gone": 0}


async def test_a_moved_lead_counts_for_both_reps_and_a_drain_counts_too(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=1, teams=["sales"])
    await rep_factory(store, "b", capacity=1, teams=["sales"], status="offline")
    assert (await store.assign(lead("x"), "p0@0")).assignment.rep_id == "a"
    assert (await store.assign(lead("y"), "p0@1")).status == "queued"
    await store.set_presence("b", "online")  # y drains to b
    assert (await store.reassign("x", None)).ok  # never back to a, and b is full: x waits
    assert (await store.close("y", "won")).ok  # b drains x
    assert (await store.lead("x"))["rep_id"] == "b"
    (sales, _) = await store.fairness(3600)
    assert sales["reps"] == {"a": 1, "b": 2} and sales["assignments"] == 3 and sales["spread"] == 1


async def test_only_the_window_counts_and_the_log_is_trimmed_to_the_retention(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "a", capacity=10, teams=["sales"])
    await rep_factory(store, "b", capacity=10, teams=["sales"])
    now_ms = await store.now_ms()
    log = store.keys.assignment_log
    # Older entries, as reserve() writes them: queue|rep|lead scored by when.
    await store.client.zadd(log, {"sales|a|old1": now_ms - 7_200_000, "sales|a|old2": now_ms - 5_000_000,
                                  "sales|b|mid": now_ms - 1_800_000})
    await store.assign(lead(), "p0@0")
    (hour, _) = await store.fairness(3600)
    assert hour["reps"] == {"a": 1, "b": 1}, "both empty and never assigned: a, by id, took the new lead"
    (three_hours, _) = await store.fairness(3 * 3600)
    assert three_hours["assignments"] == 4
    assert await store.forget_assignments(3600) == 2
    assert await store.client.zcard(log) == 2
    (after, _) = await store.fairness(3 * 3600)
    assert after["assignments"] == 2, "what the retention dropped no window counts again"
    assert await store.forget_assignments(3600) == 0


async def test_parallel_decisions_are_each_logged_once(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    for rep_id in ("a", "b", "c"):
        await rep_factory(store, rep_id, capacity=5, teams=["sales"])
    decisions = await asyncio.gather(*(store.assign(lead(), f"p0@{n}") for n in range(20)))
    assigned = sum(d.status == "assigned" for d in decisions)
    assert assigned == 15
    (sales, _) = await store.fairness(60)
    assert sales["reps"] == {"a": 5, "b": 5, "c": 5} and sales["spread"] == 0 and sales["gini"] == 0.0
    assert sales["assignments"] == 15
