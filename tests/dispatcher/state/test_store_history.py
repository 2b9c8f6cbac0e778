"""The audit trail at the Redis level: every history entry reaches lead-events (a lead's own
decision through its caller, everything else through the outbox), every rep's log, and the
notifications stream."""

from __future__ import annotations

import asyncio

from dispatcher.outbox import event_of

from .conftest import lead


async def lead_events(store, decisions) -> list[dict]:
    """What reaches lead-events: the decisions' own events, then the outbox's, in stream order."""
    announced = [event for decision in decisions for event in decision.lead_events]
    relayed = [event_of(entry_id, fields) for entry_id, fields in await store.client.xrange(store.keys.outbox)
               if fields["topic"] == "lead-events"]
    return announced + [event for event in relayed if event["type"] == "lead_event"]


async def test_a_lead_through_every_state_has_a_complete_history_and_the_same_events(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "ann", capacity=1, status="offline")
    await rep_factory(store, "bob", capacity=1, status="offline")
    item = lead("L1")
    assert await store.accept(item) == "new"
    decision = await store.assign(item, "leads/0@7")
    assert decision.status == "queued" and [e["event"] for e in decision.lead_events] == ["accepted", "queued"]
    drained = (await store.set_presence("ann", "online")).assignments
    assert [a.lead_id for a in drained] == ["L1"]
    await store.set_presence("bob", "online")
    assert (await store.reassign("L1", "bob", actor="supervisor:sue")).ok
    assert (await store.close("L1", "won", actor="rep:bob")).ok

    history = (await store.lead("L1"))["history"]
    assert [entry["event"] for entry in history] == ["accepted", "queued", "assigned", "reassigned", "closed"]
    events = await lead_events(store, [decision])
    assert [event["event"] for event in events] == [entry["event"] for entry in history]
    for event, entry in zip(events, history, strict=True):
        assert event["lead_id"] == "L1" and event["type"] == "lead_event"
        assert {name: event[name] for name in entry} == entry
    ids = [event["event_id"] for event in events]
    assert len(set(ids)) == 5 and ids[:2] == ["decided:L1#1", "decided:L1#2"]
    moved = events[3]
    assert (moved["rep_id"], moved["from_rep"], moved["by"]) == ("bob", "ann", "supervisor:sue")
    assert "waited" in events[2]["reason"] and "facts" not in events[2]

    # A replay of the decision announces the same events under the same ids; nothing else changes.
    outbox_before = await store.client.xlen(store.keys.outbox)
    replay = await store.assign(item, "leads/0@7")
    assert replay.kind == "replay" and replay.lead_events == decision.lead_events
    duplicate = await store.assign(item, "leads/1@3")
    assert duplicate.kind == "duplicate" and duplicate.lead_events == ()
    assert await store.client.xlen(store.keys.outbox) == outbox_before


async def test_a_decision_writes_its_events_nowhere_but_to_its_caller(store_factory, rep_factory):
    """A lead's own decision keeps its one hop: its events go out with the assignment, not the outbox."""
    store = await store_factory()
    await rep_factory(store, "r")
    outbox_before = await store.client.xlen(store.keys.outbox)
    decision = await store.assign(lead("direct"), "leads/0@1")
    assert decision.status == "assigned"
    assert [(e["event"], e["event_id"]) for e in decision.lead_events] == [
        ("accepted", "decided:direct#1"), ("assigned", "decided:direct#2")]
    assert await store.client.xlen(store.keys.outbox) == outbox_before


async def test_rep_history_newest_first_paged_without_gaps_or_repeats(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=50)
    await rep_factory(store, "other", capacity=50, status="offline")
    for n in range(7):
        await store.assign(lead(f"h{n}"), f"p@{n}")
    for n in range(3):
        assert (await store.close(f"h{n}", "won")).ok
    seen, cursor = [], None
    while True:
        page, cursor = await store.rep_history("r", 4, cursor)
        assert len(page) <= 4
        seen += page
        if cursor is None:
            break
    assert [(e["event"], e["lead_id"]) for e in seen] == (
        [("closed", f"h{n}") for n in (2, 1, 0)] + [("assigned", f"h{n}") for n in range(6, -1, -1)])
    assert len({e["event_id"] for e in seen}) == 10
    assert all(e["rep_id"] == "r" for e in seen if e["event"] == "assigned")
    assert await store.rep_history("other", 10) == ([], None)
    assert await store.rep_history("nobody", 10) is None


async def test_rep_history_forgets_entries_older_than_the_retention(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=50)
    await store.assign(lead("old"), "p@0")
    await asyncio.sleep(0.6)
    await store.assign(lead("new"), "p@1")
    assert await store.forget_rep_history(0.4) == (1, 1)
    page, _ = await store.rep_history("r", 10)
    assert [e["lead_id"] for e in page] == ["new"]
    # r is now dated by its newest entry, so it is not visited again until that one is old.
    assert await store.forget_rep_history(0.4) == (0, 0)
    await asyncio.sleep(0.6)
    assert await store.forget_rep_history(0.4) == (1, 1)
    assert await store.client.zcard(store.keys.rep_log) == 0
    assert await store.client.zcard(store.keys.rep_log_oldest) == 0


async def test_every_assignment_notifies_its_rep_from_the_step_itself(store_factory, rep_factory):
    """Own decisions, drains and moves alike, whichever worker holds the rep's connection."""
    store = await store_factory()
    await rep_factory(store, "a", capacity=1)
    await rep_factory(store, "b", capacity=2, status="offline")
    await store.assign(lead("n1"), "p@0")
    await store.assign(lead("n2"), "p@1")
    await store.set_presence("b", "online")
    assert (await store.reassign("n1", "b")).ok
    got = [(fields["rep"], event_of(entry_id, fields)) for entry_id, fields in
           await store.client.xrange(store.keys.notifications)]
    assert [(rep, e["lead_id"], e["rep_id"], e["reassigned"]) for rep, e in got] == [
        ("a", "n1", "a", False), ("b", "n2", "b", False), ("b", "n1", "b", True)]
    assert all(e["event_id"] and e["reason"] for _, e in got)
