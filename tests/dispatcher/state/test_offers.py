"""Offers against a real redis-server: a lead in a queue with `offer` is offered to the rep its
strategy picks, with a unit of capacity reserved, until the rep accepts, rejects or lets it run
out; a rep that leaves (away, offline, silent) gives its offers back at once; every timer lives in
`due`, so an offer runs out once however many workers look."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.dispatcher.state.conftest import lead
from tests.dispatcher.state.test_sticky_overflow import POLL_S, SLACK_S

OFFER_S = 0.5
ROUTING = f"""
queues:
  offers: {{offer: {{accept_timeout_s: {OFFER_S}, away_after_timeouts: 2}}}}
"""
LONG_OFFER = """
queues:
  offers: {offer: {accept_timeout_s: 30}}
"""


async def record(store, lead_id: str) -> dict:
    return await store.lead(lead_id)


async def loads(store) -> dict[str, object]:
    return {rep["id"]: rep["load"] for rep in await store.reps()}


def events(record_: dict) -> list[str]:
    return [entry["event"] for entry in record_["history"]]


async def outbox(store, topic: str) -> list[dict]:
    """The outbox entries for `topic`, values decoded (an assignment row kept as its list)."""
    found = []
    for _, fields in await store.client.xrange(store.keys.outbox):
        if fields["topic"] == topic:
            found.append(orjson.loads(fields.get("value") or fields.get("row") or fields.get("moved")))
    return found


async def offered(store, lead_id: str) -> str:
    decision = await store.assign(lead(lead_id), f"p@{lead_id}")
    assert (decision.status, decision.assignment) == ("offered", None), "an offer is announced only once accepted"
    current = await record(store, lead_id)
    assert current["status"] == "offered"
    return current["rep_id"]


async def run_due_until(store, done, timeout_s: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        await store.move_due()
        if await done():
            return time.monotonic() - started
        await asyncio.sleep(POLL_S)
    raise AssertionError("the due step never moved the lead")


async def test_an_accepted_offer_becomes_the_reps_assignment(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER)
    await rep_factory(store, "ann", capacity=1)
    await rep_factory(store, "bob", capacity=1, status="offline")
    assert await offered(store, "l1") == "ann"
    assert await loads(store) == {"ann": 1, "bob": 0}, "the offer holds the unit"
    assert await store.client.zscore(store.keys.due, "l1") is not None
    # Nobody else may take it for the rep, and only while it is offered.
    refused = await store.accept_offer("l1", "bob")
    assert (refused.code, refused.detail) == ("conflict", "lead l1 is offered to another rep")
    assert (await store.accept_offer("nope", "ann")).code == "not_found"
    accepted = await store.accept_offer("l1", "ann", actor="rep ann")
    assert accepted.ok
    (assignment,) = accepted.assignments
    assert (assignment.rep_id, assignment.queue) == ("ann", "offers")
    assert "offered_at" in assignment.facts and assignment.reason
    now = await record(store, "l1")
    assert now["status"] == "assigned" and events(now)[-2:] == ["offered", "accepted"]
    assert await store.client.zscore(store.keys.due, "l1") is None, "an accepted offer has nothing due"
    assert [row[0] for row in await outbox(store, "assignments")] == ["l1"], "announced once, through the outbox"
    assert (await store.accept_offer("l1", "ann")).code == "conflict", "accepting twice changes nothing"
    assert [row[0] for row in await outbox(store, "assignments")] == ["l1"]
    assert await loads(store) == {"ann": 1, "bob": 0}


async def test_a_rejected_offer_goes_to_someone_else_and_never_back(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER)
    await rep_factory(store, "ann", capacity=2)
    await rep_factory(store, "bob", capacity=2)
    first = await offered(store, "l1")
    other = "bob" if first == "ann" else "ann"
    rejected = await store.reject_offer("l1", first)
    assert (rejected.code, rejected.detail) == ("ok", "offered")
    now = await record(store, "l1")
    assert now["rep_id"] == other and now["let_go"] == [first]
    assert events(now)[-3:] == ["offered", "rejected", "offered"]
    assert await loads(store) == {first: 0, other: 1}
    # The second rep lets it go too: nobody is left, so it waits, and the first rep gaining room
    # again is not handed it back.
    await store.reject_offer("l1", other)
    now = await record(store, "l1")
    assert now["status"] == "queued" and sorted(now["let_go"]) == ["ann", "bob"]
    await store.set_presence(first, "online")
    assert (await record(store, "l1"))["status"] == "queued"
    # A new rep gets it.
    await rep_factory(store, "cat", capacity=1)
    assert (await record(store, "l1"))["rep_id"] == "cat"
    assert (await store.reject_offer("l1", "ann")).code == "conflict", "only the rep it is offered to answers"


async def test_an_offer_runs_out_no_earlier_than_its_timeout_and_within_a_poll(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await rep_factory(store, "bob", capacity=1, status="offline")
    assert await offered(store, "l1") == "ann"
    started = time.monotonic()
    await store.set_presence("bob", "online")
    took = await run_due_until(store, lambda: _rep_is(store, "l1", "bob"))
    took = time.monotonic() - started
    assert OFFER_S - 0.02 <= took <= OFFER_S + POLL_S + SLACK_S
    now = await record(store, "l1")
    assert "offer_timed_out" in events(now) and now["let_go"] == ["ann"]
    assert (await store.accept_offer("l1", "ann")).code == "conflict", "a late accept changes nothing"
    assert await loads(store) == {"ann": 0, "bob": 1}


async def _rep_is(store, lead_id: str, rep: str) -> bool:
    return (await record(store, lead_id)).get("rep_id") == rep


async def test_an_accept_after_the_offers_end_is_refused_before_the_timer_runs(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1)
    await offered(store, "l1")
    await asyncio.sleep(OFFER_S + 0.05)
    late = await store.accept_offer("l1", "ann")
    assert late.code == "conflict" and "ran out" in late.detail
    assert (await record(store, "l1"))["status"] == "offered", "the due step, not the accept, ends it"


async def test_timeouts_in_a_row_set_the_rep_away_and_return_its_other_offers(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=3)
    await offered(store, "l1")
    await offered(store, "l2")
    await asyncio.sleep(OFFER_S / 2)
    await offered(store, "l3")
    await run_due_until(store, lambda: _status_is(store, "l1", "queued"))
    assert (await store.reps(["ann"]))[0]["status"] == "away"
    for lead_id in ("l1", "l2", "l3"):
        assert (await record(store, lead_id))["status"] == "queued", "nobody else is there: it waits"
    assert events(await record(store, "l3"))[-2] == "offer_returned", "returned before its own offer ran out"
    presence = [e for e in await outbox(store, "rep-events") if e.get("type") == "presence" and e["status"] == "away"]
    assert presence == [{"type": "presence", "rep_id": "ann", "status": "away", "previous": "online",
                         "by": "offer timeouts"}]
    assert await loads(store) == {"ann": 0}


async def test_an_answer_ends_a_run_of_timeouts(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=2)
    await offered(store, "l1")
    await run_due_until(store, lambda: _status_is(store, "l1", "queued"))
    assert await offered(store, "l2") == "ann"
    assert (await store.accept_offer("l2", "ann")).ok
    await offered(store, "l3")
    await run_due_until(store, lambda: _status_is(store, "l3", "queued"))
    assert (await store.reps(["ann"]))[0]["status"] == "online", "one timeout since the accept, not two"


async def _status_is(store, lead_id: str, status: str) -> bool:
    return (await record(store, lead_id))["status"] == status


async def test_going_away_or_offline_returns_offers_at_once(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER)
    for status in ("away", "offline"):
        await rep_factory(store, "ann", capacity=1)
        await rep_factory(store, "bob", capacity=1, status="offline")
        await offered(store, f"l-{status}")
        await store.set_presence("bob", "online")
        assert (await record(store, f"l-{status}"))["rep_id"] == "ann", "bob has room, but ann's offer runs"
        outcome = await store.set_presence("ann", status)
        assert [a.lead_id for a in outcome.assignments] == [], "an offer is no assignment"
        now = await record(store, f"l-{status}")
        assert (now["rep_id"], now["status"]) == ("bob", "offered")
        assert events(now)[-2] == "offer_returned"
        assert await loads(store) == {"ann": 0, "bob": 1}
        await store.close(f"l-{status}", "won")
        assert await loads(store) == {"ann": 0, "bob": 0}, "closing an offered lead frees its unit"
        await store.set_presence("bob", "offline")


async def test_heartbeat_loss_returns_offers(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER, presence_ttl_s=0.6)
    await rep_factory(store, "ann", capacity=1)
    await rep_factory(store, "bob", capacity=1, status="offline")
    await offered(store, "l1")
    # While ann keeps sending heartbeats past its first presence expiry, the offer stays hers.
    for _ in range(8):
        await store.set_presence("ann", "online")
        await store.set_presence("bob", "online")
        await store.move_due()
        await asyncio.sleep(0.1)
    assert (await record(store, "l1"))["rep_id"] == "ann"
    started = time.monotonic()

    async def bob_has_it() -> bool:
        await store.set_presence("bob", "online")
        return await _rep_is(store, "l1", "bob")

    await run_due_until(store, bob_has_it)
    assert time.monotonic() - started <= 0.6 + POLL_S + SLACK_S
    assert events(await record(store, "l1"))[-2] == "offer_returned"


async def test_two_workers_time_an_offer_out_once(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    other = await store_factory(ROUTING)
    other.keys = store.keys
    await rep_factory(store, "ann", capacity=1)
    await rep_factory(store, "bob", capacity=1)
    first = await offered(store, "l1")
    await asyncio.sleep(OFFER_S + 0.05)
    moved = await asyncio.gather(*(s.move_due() for s in (store, other) for _ in range(5)))
    assert sum(m.offers_returned for m in moved) == 1
    now = await record(store, "l1")
    assert events(now).count("offer_timed_out") == 1 and now["rep_id"] != first
    assert await loads(store) == {first: 0, ("bob" if first == "ann" else "ann"): 1}


async def test_a_replay_never_offers_twice(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER)
    await rep_factory(store, "ann", capacity=3)
    await offered(store, "l1")
    again = await store.assign(lead("l1"), "p@l1")
    assert (again.kind, again.status, again.assignment) == ("replay", "offered", None)
    assert events(await record(store, "l1")).count("offered") == 1
    assert await loads(store) == {"ann": 1}
    assert [e["lead_id"] for e in await outbox(store, "rep-events") if e.get("type") == "offer"] == ["l1"]


async def offered_figure(store) -> int:
    (queue,), _ = await store.queue_figures()
    return queue["offered"]


async def test_the_live_figures_count_a_lead_as_offered_exactly_while_it_is(store_factory, rep_factory):
    store = await store_factory(LONG_OFFER)
    await rep_factory(store, "ann", capacity=2)
    await rep_factory(store, "bob", capacity=2)
    first = await offered(store, "l1")
    await offered(store, "l2")
    assert await offered_figure(store) == 2
    # Re-offered to the other rep: still one offer of the queue, not two.
    await store.reject_offer("l1", first)
    assert (await record(store, "l1"))["status"] == "offered"
    assert await offered_figure(store) == 2
    assert (await store.accept_offer("l2", (await record(store, "l2"))["rep_id"])).ok
    assert await offered_figure(store) == 1
    assert (await store.close("l1", "lost")).ok
    assert await offered_figure(store) == 0
    assert await store.client.zcard(store.keys.offers) == 0
