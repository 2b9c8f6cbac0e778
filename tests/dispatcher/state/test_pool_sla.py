"""Claim pool, release and first-contact SLA against a real redis-server: leads reach a queue's pool
by waiting or by the pool strategy, reps claim them (exactly one claim wins), a rep hands a lead back
to someone else, and a lead its rep does not contact in time moves once, however many workers look."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from dispatcher.routing import RoutingError, parse_routing
from tests.dispatcher.state.conftest import lead

POOL_AFTER_S = 0.5
SLA_S = 0.5
POLL_S = 0.05
SLACK_S = 0.35

ROUTING = f"""
queues:
  open: {{strategy: pool, members: {{teams: [open]}}, pool: {{max_claims_per_hour: 2}}}}
  slow: {{members: {{teams: [slow]}}, pool: {{after_s: {POOL_AFTER_S}}}}}
  both: {{members: {{teams: [slow]}}, pool: {{after_s: {POOL_AFTER_S}}}, overflow: {{after_s: 30, to: general}}}}
  to_pool: {{members: {{teams: [sla]}}, sla: {{first_contact_s: {SLA_S}, on_breach: pool}}}}
  reroute: {{members: {{teams: [sla]}}, sla: {{first_contact_s: {SLA_S}, on_breach: reroute}}}}
  escalate: {{members: {{teams: [sla]}}, sla: {{first_contact_s: {SLA_S}, on_breach: escalate, escalate_to: supervisors}}}}
  supervisors: {{members: {{teams: [boss]}}}}
  general: {{}}
rules:
  - {{when: {{attributes: {{q: open}}}}, queue: open}}
  - {{when: {{attributes: {{q: slow}}}}, queue: slow}}
  - {{when: {{attributes: {{q: both}}}}, queue: both}}
  - {{when: {{attributes: {{q: to_pool}}}}, queue: to_pool}}
  - {{when: {{attributes: {{q: reroute}}}}, queue: reroute}}
  - {{when: {{attributes: {{q: escalate}}}}, queue: escalate}}
default_queue: general
"""


def in_queue(lead_id: str, queue: str, **fields):
    return lead(lead_id, attributes={"q": queue}, **fields)


async def record(store, lead_id: str) -> dict:
    return orjson.loads(await store.client.hget(store.keys.leads, lead_id))


async def events(store, topic: str) -> list[dict]:
    """The outbox's events on a topic, as their JSON values."""
    return [orjson.loads(fields["value"]) for _, fields in await store.client.xrange(store.keys.outbox)
            if fields["topic"] == topic and "value" in fields]


async def run_due_until(store, done, timeout_s: float = 5.0):
    """Runs the due step every POLL_S until `done()` holds; returns every DueMoved and the seconds it took."""
    started = time.monotonic()
    steps = []
    while time.monotonic() - started < timeout_s:
        steps.append(await store.move_due())
        if await done():
            return steps, time.monotonic() - started
        await asyncio.sleep(POLL_S)
    raise AssertionError("the due step never moved the lead")


async def test_pool_strategy_sends_every_lead_to_the_pool_best_first(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=5, teams=["open"])
    low = await store.assign(in_queue("low", "open"), "p@low")
    high = await store.assign(in_queue("high", "open", priority=5), "p@high")
    assert (low.status, high.status) == ("pooled", "pooled")
    # Nobody is drained a pooled lead, however much room they have.
    assert (await store.set_presence("ann", "online")).assignments == ()
    assert await store.client.zrange(store.keys.queue_pool("open"), 0, -1) == ["high", "low"]
    assert (await record(store, "low"))["history"][-1]["event"] == "pooled"
    assert {e["lead_id"] for e in await events(store, "lead-events") if e["type"] == "lead_pooled"} == {"low", "high"}


async def test_a_lead_goes_to_the_pool_after_waiting_after_s_and_not_before(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1, teams=["slow"])
    await store.assign(in_queue("busy", "slow"), "p@busy")
    started = time.monotonic()
    assert (await store.assign(in_queue("waits", "slow"), "p@waits")).status == "queued"

    async def pooled():
        return (await record(store, "waits"))["status"] == "pooled"

    steps, _ = await run_due_until(store, pooled)
    waited = time.monotonic() - started
    assert POOL_AFTER_S - 0.05 <= waited <= POOL_AFTER_S + SLACK_S
    assert sum(step.pooled for step in steps) == 1
    assert await store.client.zscore(store.keys.queue_pool("slow"), "waits") is not None
    assert await store.client.zrange(store.keys.queue_wait("slow", "web"), 0, -1) == []
    assert await store.client.zscore(store.keys.due, "waits") is None
    # A close frees room, and the pooled lead is not drained to it.
    assert (await store.close("busy", "won")).assignments == ()
    assert (await record(store, "waits"))["status"] == "pooled"


async def test_a_lead_in_a_queue_with_overflow_and_pool_goes_by_the_earlier(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1, teams=["slow"])
    await store.assign(in_queue("busy", "both"), "p@busy")
    await store.assign(in_queue("waits", "both"), "p@waits")
    due_at = await store.client.zscore(store.keys.due, "waits")
    assert due_at == (await record(store, "waits"))["waiting_since"] + POOL_AFTER_S * 1000

    async def pooled():
        return (await record(store, "waits"))["status"] == "pooled"

    await run_due_until(store, pooled)
    assert (await record(store, "waits"))["queue"] == "both"


async def test_fifty_parallel_claims_for_one_lead_have_exactly_one_winner(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    reps = [f"rep-{n:02d}" for n in range(50)]
    for rep in reps:
        await rep_factory(store, rep, capacity=1, teams=["open"])
    await store.assign(in_queue("prize", "open"), "p@prize")
    outcomes = await asyncio.gather(*(store.claim("prize", rep) for rep in reps))
    winners = [rep for rep, outcome in zip(reps, outcomes, strict=True) if outcome.ok]
    assert len(winners) == 1
    assert {o.code for o in outcomes if not o.ok} == {"conflict"}
    assert all("no longer in a pool" in o.detail for o in outcomes if not o.ok)
    taken = await record(store, "prize")
    assert (taken["status"], taken["rep_id"]) == ("assigned", winners[0])
    assert taken["history"][-1]["event"] == "claimed"
    loads = await store.client.hgetall(store.keys.rep_load)
    assert {field: int(n) for field, n in loads.items() if int(n)} == {f"{winners[0]}|*": 1}
    (winner_outcome,) = [o for o in outcomes if o.ok]
    assert winner_outcome.assignments[0].reason.endswith(f"claimed from the pool of queue open by rep {winners[0]}, "
                                                         f"pooled {winner_outcome.assignments[0].facts['pooled_ms'] / 1000:.1f} s")
    rows = [fields for _, fields in await store.client.xrange(store.keys.outbox) if fields["topic"] == "assignments"]
    assert [orjson.loads(row["row"])[:2] for row in rows] == [["prize", winners[0]]]


async def test_one_rep_claiming_fifty_times_at_once_fills_its_capacity_and_no_more(store_factory, rep_factory):
    store = await store_factory(ROUTING.replace("max_claims_per_hour: 2", "max_claims_per_hour: 100"))
    await rep_factory(store, "ann", capacity=3, teams=["open"])
    for n in range(50):
        await store.assign(in_queue(f"l{n}", "open"), f"p@{n}")
    outcomes = await asyncio.gather(*(store.claim(f"l{n}", "ann") for n in range(50)))
    assert sum(o.ok for o in outcomes) == 3
    assert all("at capacity (3 of 3)" in o.detail and o.code == "conflict" for o in outcomes if not o.ok)
    assert int(await store.client.hget(store.keys.rep_load, "ann|*")) == 3
    assert await store.client.zcard(store.keys.queue_pool("open")) == 47


async def test_claims_per_hour_limit_is_counted_per_rep(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=10, teams=["open"])
    await rep_factory(store, "bob", capacity=10, teams=["open"])
    for n in range(4):
        await store.assign(in_queue(f"l{n}", "open"), f"p@{n}")
    assert (await store.claim("l0", "ann")).ok
    assert (await store.claim("l1", "ann")).ok
    third = await store.claim("l2", "ann")
    assert (third.code, third.detail) == ("conflict", "rep ann has claimed 2 leads from the pool of queue open in the "
                                                      "last hour, its limit")
    assert (await record(store, "l2"))["status"] == "pooled"
    # Another rep has its own count; a refused claim was not counted.
    assert (await store.claim("l2", "bob")).ok
    # Claims older than an hour no longer count (moved back in time here, as the clock would).
    entries = await store.client.zrange(store.keys.claims, 0, -1)
    assert len(entries) == 3
    old = int(time.time() * 1000) - 3_600_001
    for entry in entries:
        if entry.startswith("ann|"):
            rep, queue, _, lead_id = entry.split("|")
            await store.client.zrem(store.keys.claims, entry)
            await store.client.zadd(store.keys.claims, {f"{rep}|{queue}|{old:014d}|{lead_id}": 0})
    assert (await store.claim("l3", "ann")).ok
    assert sorted(e.split("|")[0] for e in await store.client.zrange(store.keys.claims, 0, -1)) == ["ann", "bob"]


async def test_a_claim_is_refused_in_words_when_the_rep_cannot_take_the_lead(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1, teams=["open"])
    await rep_factory(store, "out", capacity=1, teams=["slow"])
    await rep_factory(store, "away", capacity=1, teams=["open"], status="away")
    await store.assign(in_queue("l", "open"), "p@l")
    not_member = await store.claim("l", "out")
    assert (not_member.code, not_member.detail) == ("unprocessable",
                                                    "rep out cannot claim lead l from queue open: it is not a member of the queue")
    assert (await store.claim("l", "away")).code == "conflict"
    assert (await store.claim("l", "ghost")).code == "not_found"
    assert (await store.claim("nothing", "ann")).code == "not_found"
    assert (await record(store, "l"))["status"] == "pooled"


async def test_release_re_routes_to_someone_else_and_never_back(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=2)
    await rep_factory(store, "bob", capacity=2)
    first = (await store.assign(lead("l"), "p@l")).assignment.rep_id
    other = "bob" if first == "ann" else "ann"
    refused = await store.release("l", "wrong language", only_rep=other)
    assert refused.code == "forbidden"
    outcome = await store.release("l", "wrong language", only_rep=first, actor=f"rep {first}")
    assert outcome.ok
    assert outcome.assignments[0].rep_id == other
    assert f"re-routed away from {first}" in outcome.assignments[0].reason
    moved = await record(store, "l")
    assert (moved["status"], moved["rep_id"], moved["let_go"]) == ("assigned", other, [first])
    released = [e for e in moved["history"] if e["event"] == "released"]
    assert released == [{"at": released[0]["at"], "event": "released", "rep_id": first, "reason": "wrong language",
                         "by": f"rep {first}"}]
    # Its unit came back; the second rep lets it go too: nobody else is left, so it waits, and the
    # rep that first let it go is not handed it back.
    assert await store.client.hget(store.keys.rep_load, f"{first}|*") == "0"
    again = await store.release("l", "busy")
    assert again.ok and again.assignments == ()
    assert (await record(store, "l"))["status"] == "queued"
    assert (await store.release("l", "again")).code == "conflict"


async def breach_setup(store_factory, rep_factory, queue: str):
    store = await store_factory(ROUTING)
    await rep_factory(store, "ann", capacity=1, teams=["sla"])
    decision = await store.assign(in_queue("l", queue), "p@l")
    assert decision.assignment.rep_id == "ann"
    due = await store.client.zscore(store.keys.due, "l")
    assert due == decision.assignment.assigned_at_ms + SLA_S * 1000
    return store


async def breached(store) -> bool:
    return any(e["event"] == "sla_breached" for e in (await record(store, "l"))["history"])


async def test_a_breach_with_on_breach_pool_frees_the_rep_and_pools_the_lead(store_factory, rep_factory):
    store = await breach_setup(store_factory, rep_factory, "to_pool")
    started = time.monotonic()
    steps, _ = await run_due_until(store, lambda: breached(store))
    assert SLA_S - 0.05 <= time.monotonic() - started <= SLA_S + SLACK_S
    assert [b for step in steps for b in step.breaches] == [("to_pool", "ann")]
    after = await record(store, "l")
    assert after["status"] == "pooled"
    assert await store.client.hget(store.keys.rep_load, "ann|*") == "0"
    entry = [e for e in after["history"] if e["event"] == "sla_breached"][0]
    assert entry["rep_id"] == "ann" and entry["after_s"] >= SLA_S
    (event,) = [e for e in await events(store, "lead-events") if e.get("event") == "sla_breached"]
    assert (event["rep_id"], event["to_queue"], event["on_breach"]) == ("ann", "to_pool", "pool")
    # The live page's figures: the breach counted for the queue and the rep, the lead in the pool.
    queues, breaches_by_rep = await store.queue_figures()
    figures = {queue["name"]: queue for queue in queues}
    assert (figures["to_pool"]["breaches"], figures["to_pool"]["pooled"]) == (1, 1)
    assert figures["reroute"]["breaches"] == figures["reroute"]["pooled"] == 0
    assert breaches_by_rep == {"ann": 1}


async def test_a_breach_with_on_breach_reroute_goes_to_another_rep(store_factory, rep_factory):
    store = await breach_setup(store_factory, rep_factory, "reroute")
    await rep_factory(store, "bob", capacity=1, teams=["sla"])
    steps, _ = await run_due_until(store, lambda: breached(store))
    after = await record(store, "l")
    assert (after["status"], after["rep_id"]) == ("assigned", "bob")
    assert [a.rep_id for step in steps for a in step.assignments] == ["bob"]
    # bob's own first-contact clock runs from now.
    assert await store.client.zscore(store.keys.due, "l") == after["assigned_at"] + SLA_S * 1000


async def test_a_breach_with_on_breach_escalate_goes_to_the_escalation_queue(store_factory, rep_factory):
    store = await breach_setup(store_factory, rep_factory, "escalate")
    await rep_factory(store, "boss", capacity=1, teams=["boss"])
    await run_due_until(store, lambda: breached(store))
    after = await record(store, "l")
    assert (after["status"], after["rep_id"], after["queue"]) == ("assigned", "boss", "supervisors")
    (event,) = [e for e in await events(store, "lead-events") if e.get("event") == "sla_breached"]
    assert (event["queue"], event["to_queue"], event["rep_id"], event["on_breach"]) == (
        "escalate", "supervisors", "ann", "escalate")
    assert await store.client.zscore(store.keys.due, "l") is None


async def test_contact_before_the_deadline_prevents_the_breach(store_factory, rep_factory):
    store = await breach_setup(store_factory, rep_factory, "to_pool")
    assert (await store.contact("l", only_rep="bob")).code == "forbidden"
    assert (await store.contact("l", only_rep="ann")).ok
    assert (await store.contact("l")).detail.startswith("already contacted")
    assert await store.client.zscore(store.keys.due, "l") is None
    await asyncio.sleep(SLA_S + 0.1)
    assert (await store.move_due()).breaches == ()
    after = await record(store, "l")
    assert (after["status"], [e["event"] for e in after["history"]][-1]) == ("assigned", "contacted")


async def test_a_breach_fires_once_across_two_stores_and_after_a_restart(store_factory, rep_factory):
    store = await breach_setup(store_factory, rep_factory, "to_pool")
    await rep_factory(store, "bob", capacity=1, teams=["sla"])
    # A second lead whose deadline passes while no worker runs: a new Store on the same Redis (a
    # restarted worker) still breaches it, since the clock lives in Redis.
    await store.assign(in_queue("m", "reroute"), "p@m")
    other = await store_factory(ROUTING, keys=store.keys)
    await asyncio.sleep(SLA_S + 0.05)
    restarted = await store_factory(ROUTING, keys=store.keys)
    results = await asyncio.gather(*(s.move_due() for s in (store, other, restarted) for _ in range(5)))
    breaches = [b for step in results for b in step.breaches]
    assert sorted(breaches) == [("reroute", "bob"), ("to_pool", "ann")]
    history = (await record(store, "l"))["history"]
    assert [e["event"] for e in history].count("sla_breached") == 1


def test_bad_pool_and_sla_options_are_refused_in_words():
    cases = {
        "queues: {a: {sla: {first_contact_s: 60, on_breach: escalate, escalate_to: nowhere}}}":
            "queue 'a' escalates SLA breaches to queue 'nowhere', which is not defined",
        "queues: {a: {sla: {first_contact_s: 60, on_breach: escalate}}}": "escalate_to names the queue",
        "queues: {a: {sla: {first_contact_s: 60, on_breach: pool, escalate_to: a}}}": "escalate_to names the queue",
        "queues: {a: {pool: {max_claims_per_hour: 0}}}": "max_claims_per_hour",
        "queues: {a: {sla: {first_contact_s: 60, on_breach: drop}}}": "on_breach",
    }
    for text, words in cases.items():
        with pytest.raises(RoutingError) as refused:
            parse_routing(text, "t")
        assert words in str(refused.value), (text, str(refused.value))
