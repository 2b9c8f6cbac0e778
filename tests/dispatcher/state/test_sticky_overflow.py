"""Queue options sticky and overflow against a real redis-server: a returning customer goes back to
its last rep, waits for it at most the queue's wait, and a lead nobody takes moves on to a wider
queue after the overflow time; every such move happens once, however many workers look."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.dispatcher.state.conftest import lead

HOLD_S = 0.6
OVERFLOW_S = 0.5
CHAINED_S = 0.4
# How often these tests run the due step, as a worker's timer would, and the slack a loaded
# 2-core machine needs on top of it.
POLL_S = 0.05
SLACK_S = 0.35

ROUTING = f"""
queues:
  held: {{sticky: {{field: customer_id, wait_s: {HOLD_S}}}}}
  quick: {{sticky: {{field: customer_id, wait_s: 0}}}}
  narrow: {{members: {{teams: [narrow]}}, overflow: {{after_s: {OVERFLOW_S}, to: wider}}}}
  wider: {{members: {{teams: [wider]}}, overflow: {{after_s: {CHAINED_S}, to: everyone}}}}
  everyone: {{}}
rules:
  - {{when: {{attributes: {{q: held}}}}, queue: held}}
  - {{when: {{attributes: {{q: quick}}}}, queue: quick}}
  - {{when: {{attributes: {{q: narrow}}}}, queue: narrow}}
default_queue: everyone
"""


def held_for_s(reason: str) -> float:
    """How long the reason says the lead was held for ann: the hold as it ended, which a loaded
    machine stretches past HOLD_S by up to a poll and the slack, said to a tenth of a second."""
    said = re.search(r"its last rep ann was at capacity \(1 of 1\), held (\d+\.\d) s for it; load-aware", reason)
    assert said, reason
    return float(said[1])


def customer(lead_id: str, queue: str, customer_id: str = "c-1", **fields):
    return lead(lead_id, customer_id=customer_id, attributes={"q": queue}, **fields)


async def owner_of(store, lead_id: str) -> str:
    """Assigns a first lead of customer c-1 and returns the rep it went to."""
    decision = await store.assign(customer(lead_id, "held"), f"p@{lead_id}")
    assert decision.status == "assigned"
    return decision.assignment.rep_id


async def held_and_due(store) -> tuple[list[str], list[str]]:
    return await store.client.zrange(store.keys.held_leads, 0, -1), await store.client.zrange(store.keys.due, 0, -1)


async def run_due_until(store, done, timeout_s: float = 5.0):
    """Runs the due step every POLL_S until `done(record)` holds for the lead; returns the moved
    assignments and the seconds it took."""
    started = time.monotonic()
    moved = []
    while time.monotonic() - started < timeout_s:
        moved.extend((await store.move_due()).assignments)
        if await done():
            return moved, time.monotonic() - started
        await asyncio.sleep(POLL_S)
    raise AssertionError("the due step never moved the lead")


async def test_a_returning_customer_goes_back_to_its_last_rep(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=5)
    await rep_factory(store, "bob", capacity=5)
    owner = await owner_of(store, "first")
    other = "bob" if owner == "ann" else "ann"
    # The owner is now the busier rep: load-aware alone would send the next lead to the other one.
    second = await store.assign(customer("second", "held"), "p@second")
    assert second.assignment.rep_id == owner
    assert f"returning customer (customer_id=c-1): back to its last rep {owner}, 1 of 5 open" in second.assignment.reason
    assert (await store.assign(customer("stranger", "held", customer_id="c-2"), "p@s")).assignment.rep_id == other


async def test_owner_away_with_no_wait_goes_to_the_strategy_at_once(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=5)
    first = await store.assign(customer("first", "quick"), "p@1")
    assert first.assignment.rep_id == "ann"
    await rep_factory(store, "bob", capacity=5)
    await store.set_presence("ann", "away")
    second = await store.assign(customer("second", "quick"), "p@2")
    assert second.status == "assigned" and second.assignment.rep_id == "bob"
    assert "its last rep ann was not online; load-aware: least loaded" in second.assignment.reason
    assert await held_and_due(store) == ([], [])
    # bob took the customer's last lead, so bob is its owner now.
    await store.set_presence("ann", "online")
    assert (await store.assign(customer("third", "quick"), "p@3")).assignment.rep_id == "bob"


async def test_an_owner_that_cannot_take_the_channel_is_not_waited_for(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity={"web": 2})
    await owner_of(store, "first")
    await rep_factory(store, "bob", capacity=2)
    decision = await store.assign(customer("chat", "held", channel="chat"), "p@chat")
    assert decision.assignment.rep_id == "bob", "waiting cannot make ann take chats"
    assert "its last rep ann takes no chat leads; load-aware" in decision.assignment.reason


async def test_a_held_lead_waits_for_its_owner_who_takes_it_on_coming_online(store_factory, rep_factory):
    store = await store_factory(ROUTING.replace(f"wait_s: {HOLD_S}", "wait_s: 30"))
    await rep_factory(store, "ann", capacity=5)
    await owner_of(store, "first")
    await rep_factory(store, "bob", capacity=5)
    await store.set_presence("ann", "offline")
    decision = await store.assign(customer("second", "held"), "p@2")
    assert decision.status == "queued"
    record = await store.lead("second")
    assert record["held_for"] == "ann"
    assert record["history"][-1]["event"] == "held" and record["history"][-1]["rep_id"] == "ann"
    # bob has room and gains more: still not his lead while the hold lasts.
    bob_lead = await store.assign(lead("bob-own"), "p@b")
    assert bob_lead.assignment.rep_id == "bob"
    assert not (await store.close("bob-own", "won")).assignments
    assert not (await store.move_due()).assignments, "the hold has 30 s to go"
    outcome = await store.set_presence("ann", "online")
    (taken,) = outcome.assignments
    assert (taken.lead_id, taken.rep_id) == ("second", "ann")
    assert "back to its last rep ann" in taken.reason and "waited" in taken.reason
    assert await held_and_due(store) == ([], [])


async def test_a_full_owner_takes_its_held_lead_before_older_waiting_leads(store_factory, rep_factory):
    store = await store_factory(ROUTING.replace(f"wait_s: {HOLD_S}", "wait_s: 30"))
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    assert (await store.assign(lead("older", priority=9), "p@o")).status == "queued"
    assert (await store.assign(customer("second", "held"), "p@2")).status == "queued"
    (drained,) = (await store.close("first", "won")).assignments
    assert drained.lead_id == "second", "held leads come first, whatever waits in the queues"


async def test_after_the_wait_the_strategy_decides_no_earlier(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    await rep_factory(store, "bob", capacity=1)
    assert (await store.assign(customer("second", "held"), "p@2")).status == "queued"
    held_at = time.monotonic()

    async def assigned():
        return (await store.lead("second"))["status"] == "assigned"

    moved, _ = await run_due_until(store, assigned)
    waited = time.monotonic() - held_at
    assert HOLD_S <= waited <= HOLD_S + POLL_S + SLACK_S
    (assignment,) = moved
    assert assignment.rep_id == "bob"
    assert HOLD_S <= held_for_s(assignment.reason) <= HOLD_S + POLL_S + SLACK_S
    record = await store.lead("second")
    # The Redis clock says when: the hold ended no earlier than it said it would.
    ended = next(e for e in record["history"] if e["event"] == "hold_ended")
    assert ended["at"] >= record["accepted_at"] + HOLD_S * 1000
    assert await held_and_due(store) == ([], [])
    assert await store.client.hget(store.keys.owners, "customer_id=c-1") == "bob|second"


async def test_a_hold_that_ends_with_nobody_free_waits_in_its_queue(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    assert (await store.assign(customer("second", "held"), "p@2")).status == "queued"

    async def queued_for_anyone():
        return not (await store.lead("second")).get("held_for")

    moved, _ = await run_due_until(store, queued_for_anyone)
    assert not moved
    assert await held_and_due(store) == ([], [])
    await rep_factory(store, "bob", capacity=1, status="offline")
    (drained,) = (await store.set_presence("bob", "online")).assignments
    assert (drained.lead_id, drained.rep_id) == ("second", "bob")
    assert HOLD_S <= held_for_s(drained.reason) <= HOLD_S + POLL_S + SLACK_S
    assert "until this rep had room" in drained.reason


async def test_overflow_no_earlier_than_after_s_recorded_and_chained(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "zoe", capacity=2)
    assert (await store.assign(lead("lonely", attributes={"q": "narrow"}), "p@l")).status == "queued"

    async def assigned():
        return (await store.lead("lonely"))["status"] == "assigned"

    moved, _ = await run_due_until(store, assigned)
    (assignment,) = moved
    assert (assignment.rep_id, assignment.queue) == ("zoe", "everyone")
    record = await store.lead("lonely")
    events = [e for e in record["history"] if e["event"] in ("queued", "overflowed")]
    assert [(e["event"], e.get("from_queue"), e["queue"]) for e in events] == [
        ("queued", None, "narrow"), ("overflowed", "narrow", "wider"), ("queued", None, "wider"),
        ("overflowed", "wider", "everyone")]
    # Each hop no earlier than its queue's overflow time, and not much later.
    for (entered, left), after_s in zip([(events[0], events[1]), (events[2], events[3])], (OVERFLOW_S, CHAINED_S),
                                        strict=True):
        waited_s = (left["at"] - entered["at"]) / 1000
        assert after_s <= waited_s <= after_s + POLL_S + SLACK_S
    assert assignment.reason.startswith("default sent it to queue narrow; nobody in queue narrow took it within") or \
        assignment.reason.startswith("rule 3 sent it to queue narrow; nobody in queue narrow took it within")
    assert "so it overflowed to queue wider; nobody in queue wider took it within" in assignment.reason
    assert "so it overflowed to queue everyone; load-aware" in assignment.reason
    assert await held_and_due(store) == ([], [])


async def test_a_lead_taken_before_its_overflow_never_moves(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    assert (await store.assign(lead("patient", attributes={"q": "narrow"}), "p@p")).status == "queued"
    assert await store.client.zrange(store.keys.due, 0, -1) == ["patient"]
    await rep_factory(store, "nia", teams=["narrow"])
    assert (await store.lead("patient"))["rep_id"] == "nia"
    assert await held_and_due(store) == ([], []), "a drained lead leaves due"
    await asyncio.sleep(OVERFLOW_S + 0.1)
    moved = await store.move_due()
    assert (moved.assignments, moved.overflowed) == ((), 0)


async def test_a_held_lead_closed_or_moved_before_due_leaves_nothing(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    await rep_factory(store, "bob", capacity=2)
    await store.set_presence("bob", "offline")
    for lead_id in ("to-close", "to-move"):
        assert (await store.assign(customer(lead_id, "held"), f"p@{lead_id}")).status == "queued"
    assert len((await held_and_due(store))[0]) == 2
    assert (await store.close("to-close", "lost")).ok
    await store.set_presence("bob", "online")
    moved = await store.reassign("to-move", "bob")
    assert moved.ok and moved.assignments[0].rep_id == "bob"
    assert await held_and_due(store) == ([], [])
    await asyncio.sleep(HOLD_S + 0.1)
    assert (await store.move_due()).holds_ended == 0
    assert (await store.lead("to-close"))["status"] == "closed"


async def test_replays_never_double_assign(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    held = customer("second", "held")
    assert (await store.assign(held, "p@2")).status == "queued"
    replay = await store.assign(held, "p@2")
    assert (replay.kind, replay.status) == ("replay", "queued")
    assert len((await held_and_due(store))[0]) == 1
    (drained,) = (await store.close("first", "won")).assignments
    assert drained.lead_id == "second"
    again = await store.assign(held, "p@2")
    assert (again.kind, again.assignment.rep_id) == ("replay", "ann")
    assert (await store.reps(["ann"]))[0]["load"] == 1
    overflowing = lead("o", attributes={"q": "narrow"})
    assert (await store.assign(overflowing, "p@o")).status == "queued"
    await asyncio.sleep(OVERFLOW_S + 0.05)
    assert (await store.move_due()).overflowed == 1
    assert (await store.assign(overflowing, "p@o")).kind == "replay"
    assert (await store.lead("o"))["queue"] == "wider", "a replay does not send it back"


@pytest.mark.parametrize("steps", [8])
async def test_parallel_due_steps_move_each_lead_once(store_factory, rep_factory, steps):
    store = await store_factory(ROUTING)
    await rep_factory(store, "zoe", capacity=5)
    await rep_factory(store, "yan", capacity=5)
    ids = [f"w{n:02d}" for n in range(40)]
    for lead_id in ids:
        assert (await store.assign(lead(lead_id, attributes={"q": "narrow"}), f"p@{lead_id}")).status == "queued"
    await asyncio.sleep(OVERFLOW_S + 0.05)
    results = await asyncio.gather(*(store.move_due(limit=3) for _ in range(steps * 3)))
    while (more := await store.move_due(limit=3)).overflowed:
        results.append(more)
    assert sum(r.overflowed for r in results) == len(ids)
    assert not [r for r in results if r.assignments], "wider has no members: nobody is assigned at the first hop"
    for lead_id in ids:
        record = await store.lead(lead_id)
        assert [e["event"] for e in record["history"]].count("overflowed") == 1
        assert record["queue"] == "wider"
    await asyncio.sleep(CHAINED_S + 0.05)
    second = await asyncio.gather(*(store.move_due(limit=3) for _ in range(steps * 3)))
    while (more := await store.move_due(limit=3)).overflowed:
        second.append(more)
    assigned = [a.lead_id for r in second for a in r.assignments]
    assert sum(r.overflowed for r in second) == len(ids)
    assert len(assigned) == len(set(assigned)) == 10, "exactly the capacity of everyone's two reps"
    assert {rep["id"]: rep["load"] for rep in await store.reps()} == {"zoe": 5, "yan": 5}


async def test_routing_changes_reroute_held_leads_and_redate_overflows(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await store.apply_routing(store.routing)
    await rep_factory(store, "ann", capacity=1)
    await owner_of(store, "first")
    assert (await store.assign(customer("held-one", "held"), "p@h")).status == "queued"
    assert (await store.assign(lead("waiting", attributes={"q": "narrow"}), "p@w")).status == "queued"
    before = await store.client.zscore(store.keys.due, "waiting")
    from dispatcher.routing import parse_routing

    changed = ROUTING.replace("  held: {sticky: {field: customer_id, wait_s: 0.6}}\n", "").replace(
        "  - {when: {attributes: {q: held}}, queue: held}\n", "").replace(f"after_s: {OVERFLOW_S}, to: wider",
                                                                         "after_s: 60, to: wider")
    change = await store.apply_routing(parse_routing(changed, "changed"))
    assert change.rerouted == 1
    record = await store.lead("held-one")
    assert record["queue"] == "everyone" and record["status"] == "queued" and "held_for" not in record
    assert (await store.client.zrange(store.keys.held_leads, 0, -1)) == []
    after = await store.client.zscore(store.keys.due, "waiting")
    assert after == before - OVERFLOW_S * 1000 + 60_000


async def test_a_customer_owner_goes_with_the_lead_that_made_it_and_no_sooner(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=5)
    assert await owner_of(store, "first") == "ann"
    await store.close("first", "won")
    assert (await store.assign(customer("again", "held"), "p@again")).assignment.rep_id == "ann"
    # The customer's later lead made ann its owner again: forgetting the first one leaves that.
    assert await store.expire_closed(retention_s=0) == 1
    assert await store.client.hgetall(store.keys.owners) == {"customer_id=c-1": "ann|again"}
    await store.close("again", "won")
    assert await store.expire_closed(retention_s=0) == 1
    assert await store.client.hlen(store.keys.owners) == 0
