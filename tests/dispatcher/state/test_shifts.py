"""Rep schedules against a real redis-server: an off-shift rep gets no new lead, offer, claim or
drain; the shift step at its boundary puts it to work (once, however many workers apply it) and
level with the others in weighted and round-robin queues; going off shift returns its offers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson

from dispatcher.state.store import Store
from tests.dispatcher.state.conftest import lead
from tests.dispatcher.state.test_offers import outbox

ROUTING = """
queues:
  general: {}
  wt: {strategy: weighted, members: {teams: [wt]}}
  rr: {strategy: round_robin, members: {teams: [rr]}}
  offers: {members: {teams: [offers]}, offer: {accept_timeout_s: 30}}
  open: {strategy: pool, members: {teams: [open]}}
rules:
  - {when: {attributes: {q: wt}}, queue: wt}
  - {when: {attributes: {q: rr}}, queue: rr}
  - {when: {attributes: {q: offers}}, queue: offers}
  - {when: {attributes: {q: open}}, queue: open}
default_queue: general
"""
# How long a rep stays off shift in these tests: its absence ends this far ahead of Redis's clock.
OFF_S = 0.6


def iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")


async def absent_for(store: Store, seconds: float) -> dict:
    """A schedule whose absence began an hour ago and ends `seconds` from now (Redis clock)."""
    now = await store.now_ms()
    return {"absences": [{"from": iso(now - 3_600_000), "to": iso(now + int(seconds * 1000)), "reason": "test"}]}


async def rep_object(store: Store, rep_id: str) -> dict:
    (rep,) = await store.reps([rep_id])
    return rep


async def until_due(store: Store, rep_id: str) -> None:
    """Sleeps until the rep's shift boundary has passed on Redis's clock."""
    due = await store.client.zscore(store.keys.rep_shift_due, rep_id)
    assert due is not None
    await asyncio.sleep(max(0.0, (due - await store.now_ms()) / 1000) + 0.02)


async def test_an_off_shift_rep_gets_no_lead_until_its_shift_starts(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    schedule = await absent_for(store, OFF_S)
    await rep_factory(store, "ann", schedule=schedule)
    ann = await rep_object(store, "ann")
    assert (ann["status"], ann["on_shift"], ann["schedule"]) == ("online", False, schedule)
    assert ann["shift_changes_at"] == schedule["absences"][0]["to"].replace("+00:00", "Z")
    decision = await store.assign(lead("s1"), "p@s1")
    assert (decision.status, decision.assignment) == ("queued", None), "online but off shift: the lead waits"
    # A heartbeat (coming online again) does not put it to work either.
    assert (await store.set_presence("ann", "online")).assignments == ()
    assert (await store.apply_shifts()).changed == (), "nothing is due before the boundary"

    await until_due(store, "ann")
    applied = await store.apply_shifts()
    assert applied.changed == (("ann", True),)
    assert [(a.lead_id, a.rep_id) for a in applied.assignments] == [("s1", "ann")], "the waiting lead drains to it"
    ann = await rep_object(store, "ann")
    assert (ann["on_shift"], ann["shift_changes_at"]) == (True, None), "no hours: on shift for good"
    assert await store.client.zcard(store.keys.rep_shift_due) == 0
    shift_events = [e for e in await outbox(store, "rep-events") if e["type"] == "shift"]
    assert [(e["on_shift"], e.get("by")) for e in shift_events] == [(False, None), (True, "schedule")]


async def test_two_workers_applying_the_same_boundary_apply_it_once(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    other = await store_factory(ROUTING, keys=store.keys)
    await rep_factory(store, "ann", schedule=await absent_for(store, 0.3))
    for n in range(3):
        await store.assign(lead(f"w{n}"), f"p@w{n}")
    await until_due(store, "ann")
    first, second = await asyncio.gather(store.apply_shifts(), other.apply_shifts())
    assert sorted(first.changed + second.changed) == [("ann", True)]
    assert len(first.assignments) + len(second.assignments) == 2, "its capacity, once"
    assert [e["on_shift"] for e in await outbox(store, "rep-events") if e["type"] == "shift"] == [False, True]


async def test_a_profile_changed_after_the_read_wins_over_the_shift_step(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", schedule=await absent_for(store, 0.2))
    due = await store.client.zscore(store.keys.rep_shift_due, "ann")
    await until_due(store, "ann")
    # What a worker computed from the old profile, applied after a new one came in (a long absence).
    await rep_factory(store, "ann", schedule=await absent_for(store, 3600))
    raw = await store.client.hget(store.keys.rep_profiles, "ann")
    stale = await store._step("shift", lambda: ("ann", int(due), "0" * 40, "on", 0))
    assert stale == ["stale"]
    assert raw == await store.client.hget(store.keys.rep_profiles, "ann")
    assert (await rep_object(store, "ann"))["on_shift"] is False


async def ahead(store: Store, queue: str, count: int, prefix: str) -> list[str]:
    reps = []
    for n in range(count):
        decision = await store.assign(lead(f"{prefix}{n}", attributes={"q": queue}), f"p@{prefix}{n}")
        assert decision.assignment, decision
        reps.append(decision.assignment.rep_id)
    return reps


async def test_a_rep_coming_on_shift_starts_level_and_takes_no_flood(store_factory, rep_factory):
    """While ann was off shift, bob and cat took 20 leads each in the weighted and round-robin
    queues; back on shift she takes her share of the next ones, not every one of them."""
    store = await store_factory(ROUTING)
    schedule = await absent_for(store, OFF_S)
    await rep_factory(store, "ann", capacity=100, teams=["wt", "rr"], schedule=schedule)
    for rep in ("bob", "cat"):
        await rep_factory(store, rep, capacity=100, teams=["wt", "rr"])
    for queue in ("wt", "rr"):
        assert set(await ahead(store, queue, 40, f"{queue}-before-")) == {"bob", "cat"}
    await until_due(store, "ann")
    assert (await store.apply_shifts()).changed == (("ann", True),)
    for queue in ("wt", "rr"):
        after = await ahead(store, queue, 9, f"{queue}-after-")
        # Without catching up she would take all 9 (20 weighted turns behind). Level with the
        # queue's virtual time, she may win the ties at it: one lead ahead at most, as a rep back online.
        counts = {rep: after.count(rep) for rep in ("ann", "bob", "cat")}
        assert counts["ann"] <= 4 and min(counts.values()) >= 2, (queue, after)


async def test_going_off_shift_returns_offers_and_keeps_assigned_leads(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    now = await store.now_ms()
    # On shift now, off from 0.4 s on for an hour.
    schedule = {"absences": [{"from": iso(now + 400), "to": iso(now + 3_600_000)}]}
    await rep_factory(store, "ann", capacity=3, teams=["offers"], schedule=schedule)
    assert (await store.assign(lead("kept"), "p@kept")).assignment.rep_id == "ann"
    await store.assign(lead("offer", attributes={"q": "offers"}), "p@offer")
    assert (await store.lead("offer"))["rep_id"] == "ann"
    await rep_factory(store, "bob", capacity=2, teams=["offers"])
    await rep_factory(store, "dan", capacity=1, schedule=schedule)  # idle: no offer to return, no lead
    await until_due(store, "ann")
    applied = await store.apply_shifts()
    assert applied.changed == (("ann", False), ("dan", False))
    offer = await store.lead("offer")
    assert (offer["status"], offer["rep_id"]) == ("offered", "bob"), "returned and offered to someone else now"
    assert offer["history"][-2]["event"] == "offer_returned" and offer["history"][-2]["why"] == "went off shift"
    assert await store.open_leads_of("ann") == ["kept"], "its own lead stays with it"
    indexes = [store.keys.queue_ready(queue, "*") for queue in ("general", "offers")]
    assert [e for key in indexes for e in await store.client.zrange(key, 0, -1) if e.endswith(("|ann", "|dan"))] \
        == [], "with room, but out of every ready index"
    # Nothing new reaches it, though it has room and a lower load than bob.
    assert (await store.assign(lead("later"), "p@later")).assignment.rep_id == "bob"
    ann = await rep_object(store, "ann")
    assert (ann["on_shift"], ann["shift_changes_at"]) == (False, iso(now + 3_600_000).replace("+00:00", "Z"))


async def test_an_off_shift_rep_cannot_claim_or_be_given_a_lead_and_is_told_until_when(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    schedule = await absent_for(store, 3600)
    await rep_factory(store, "ann", teams=["open"], schedule=schedule)
    await store.assign(lead("p1", attributes={"q": "open"}), "p@p1")
    until = datetime.fromisoformat(schedule["absences"][0]["to"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    refused = await store.claim("p1", "ann")
    assert (refused.code, refused.detail) == ("conflict", f"rep ann cannot claim lead p1 from queue open: it is off "
                                                          f"shift until {until}")
    await rep_factory(store, "bob")
    assert (await store.assign(lead("g1"), "p@g1")).assignment.rep_id == "bob"
    moved = await store.reassign("g1", "ann")
    assert (moved.code, moved.detail) == ("conflict", f"rep ann is off shift until {until}")
    raw = orjson.loads(await store.client.hget(store.keys.rep_profiles, "ann"))
    assert raw["schedule"] == schedule
