"""The atomic Redis steps against a real redis-server: every guarantee of docs/design.md that lives
in Redis, checked where it is enforced."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from dispatcher.routing import parse_routing
from dispatcher.state.writes import LEADS_PER_SCRIPT
from strategies import policy
from tests.dispatcher.state.conftest import lead

ROOT = Path(__file__).resolve().parents[3]


async def loads(store) -> dict[str, object]:
    return {rep["id"]: rep["load"] for rep in await store.reps()}


async def test_parallel_reserves_yield_exactly_capacity(store_factory, rep_factory):
    store = await store_factory()
    capacities = {"r1": 3, "r2": 5, "r3": 1, "r4": 7}
    for rep_id, capacity in capacities.items():
        await rep_factory(store, rep_id, capacity=capacity)
    decisions = await asyncio.gather(*(store.assign(lead(), f"p0@{n}") for n in range(120)))
    assigned = [d for d in decisions if d.status == "assigned"]
    assert len(assigned) == sum(capacities.values())
    assert sum(d.status == "queued" for d in decisions) == 120 - len(assigned)
    assert await loads(store) == capacities


async def test_offline_and_away_reps_get_nothing(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "away-rep", status="away")
    await rep_factory(store, "offline-rep", status="offline")
    await rep_factory(store, "gone-rep")
    await store.set_presence("gone-rep", "offline")
    decisions = [await store.assign(lead(), f"p0@{n}") for n in range(3)]
    assert [d.status for d in decisions] == ["queued"] * 3
    assert await loads(store) == {"away-rep": 0, "offline-rep": 0, "gone-rep": 0}


async def test_a_rep_whose_heartbeat_expired_counts_as_offline(store_factory, rep_factory):
    store = await store_factory(presence_ttl_s=0.2)
    await rep_factory(store, "quiet")
    await asyncio.sleep(0.3)
    assert (await store.assign(lead(), "p0@1")).status == "queued"
    (rep,) = await store.reps(["quiet"])
    assert rep["status"] == "offline"
    await store.set_presence("quiet", "online")
    assert (await loads(store))["quiet"] == 1, "the heartbeat brings it back and it drains the waiting lead"


async def test_waiting_leads_drain_highest_priority_then_oldest(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "solo", capacity=1)
    first = await store.assign(lead("busy"), "p0@0")
    assert first.assignment.rep_id == "solo"
    arrivals = [("low-old", 1), ("high-old", 8), ("low-new", 1), ("high-new", 8), ("mid", 5)]
    for lead_id, priority in arrivals:
        assert (await store.assign(lead(lead_id, priority=priority), f"p0@{lead_id}")).status == "queued"
        await asyncio.sleep(0.002)
    served = []
    current = "busy"
    for _ in arrivals:
        outcome = await store.close(current, "won")
        (drained,) = outcome.assignments
        served.append(drained.lead_id)
        current = drained.lead_id
    assert served == ["high-old", "high-new", "mid", "low-old", "low-new"]


async def test_load_aware_spreads_evenly(store_factory, rep_factory):
    store = await store_factory()
    reps = [f"rep{n}" for n in range(7)]
    for rep_id in reps:
        await rep_factory(store, rep_id, capacity=5)
    for n in range(7 * 5):
        await store.assign(lead(), f"p0@{n}")
        current = list((await loads(store)).values())
        assert max(current) - min(current) <= 1, current


async def test_ties_go_to_the_rep_idle_longest(store_factory, rep_factory):
    store = await store_factory()
    for rep_id in ("a", "b", "c"):
        await rep_factory(store, rep_id, capacity=10)
    order = [(await store.assign(lead(), f"p0@{n}")).assignment.rep_id for n in range(6)]
    assert order[:3] == sorted(order[:3]) and len(set(order[:3])) == 3, "never-assigned reps go first, by id"
    assert order[3:] == order[:3], "then whoever has waited longest since their last lead"


async def test_a_resent_id_never_makes_a_second_assignment(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=5)
    first = await store.assign(lead("same"), "leads/0@7")
    replay = await store.assign(lead("same"), "leads/0@7")
    resend = await store.assign(lead("same", priority=9), "leads/3@100")
    assert first.kind == "new" and replay.kind == "replay" and resend.kind == "duplicate"
    assert replay.assignment == first.assignment
    assert (await loads(store))["r"] == 1


async def test_closing_twice_frees_capacity_once(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=2)
    await store.assign(lead("a"), "p@1")
    await store.assign(lead("b"), "p@2")
    assert (await store.close("a", "won")).ok
    assert (await store.close("a", "won")).detail == "already closed"
    assert (await loads(store))["r"] == 1
    assert (await store.close("nope", "won")).code == "not_found"
    assert await store.open_leads_of("r") == ["b"]


async def test_per_channel_capacity_is_kept_per_channel(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity={"chat": 2, "call": 1})
    assert (await store.assign(lead(channel="call"), "p@1")).status == "assigned"
    assert (await store.assign(lead(channel="call"), "p@2")).status == "queued"
    assert (await store.assign(lead(channel="chat"), "p@3")).status == "assigned"
    assert (await store.assign(lead(channel="web"), "p@4")).status == "queued", "r takes no web leads"
    assert (await loads(store))["r"] == {"chat": 1, "call": 1}


async def test_an_int_capacity_is_one_budget_across_channels(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=2)
    assert (await store.assign(lead(channel="call"), "p@1")).status == "assigned"
    assert (await store.assign(lead(channel="chat"), "p@2")).status == "assigned"
    assert (await store.assign(lead(channel="web"), "p@3")).status == "queued"
    assert (await loads(store))["r"] == 2


async def test_required_skills_filter_reps(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "idle-english", capacity=10, skills={"english": 9})
    await rep_factory(store, "busy-spanish", capacity=2, skills={"spanish": 6})
    await store.assign(lead(), "p@0")
    await store.assign(lead(), "p@1")
    spanish = await store.assign(lead(skills=["spanish"]), "p@2")
    assert spanish.assignment.rep_id == "busy-spanish"
    assert spanish.assignment.facts["skipped"] >= 1
    assert (await store.assign(lead(skills=["mandarin"]), "p@3")).status == "queued"


async def test_a_drain_looks_past_waiting_leads_the_rep_cannot_take(store_factory, rep_factory):
    """The drain reads the wait set page by page; leads it must skip (missing skills) and entries
    it removes on the way span several pages before the first lead this rep may take."""
    store = await store_factory()
    await rep_factory(store, "english", capacity=2, skills={"english": 5}, status="offline")

    async def wait_in_line(lead_id: str, **fields: object) -> None:
        assert (await store.assign(lead(lead_id, **fields), f"p@{lead_id}")).status == "queued"
        await asyncio.sleep(0.002)  # one arrival per millisecond: the wait set orders them by age

    for n in range(20):
        await wait_in_line(f"spanish-{n}", skills=["spanish"])
    for n in range(4):
        await wait_in_line(f"gone-{n}")
        await store.client.hdel(store.keys.leads, f"gone-{n}")  # an entry whose record is gone is healed away
    await wait_in_line("plain-1")
    await wait_in_line("plain-2", skills=["english"])
    for n in range(20, 30):
        await wait_in_line(f"spanish-{n}", skills=["spanish"])
    outcome = await store.set_presence("english", "online")
    assert [a.lead_id for a in outcome.assignments] == ["plain-1", "plain-2"]
    assert (await loads(store))["english"] == 2


async def test_lowering_capacity_below_open_load_is_refused(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=3)
    for n in range(3):
        await store.assign(lead(), f"p@{n}")
    outcome = await store.upsert_rep("r", {"capacity": 2})
    assert outcome.code == "conflict" and "3 open leads" in outcome.detail
    assert (await store.reps(["r"]))[0]["capacity"] == 3


async def test_raising_capacity_drains_at_once(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=1)
    await store.assign(lead("held"), "p@0")
    await store.assign(lead("waiting"), "p@1")
    outcome = await store.upsert_rep("r", {"capacity": 2})
    assert [a.lead_id for a in outcome.assignments] == ["waiting"]


ROUTING = """
queues:
  promo: {strategy: online_now, heartbeat_window_s: 0.3}
  vip: {strategy: priority, members: {teams: [enterprise]}}
  general: {}
rules:
  - {when: {attributes: {source: promo}}, queue: promo}
  - {when: {priority_gte: 7}, queue: vip}
default_queue: general
"""


async def test_online_now_skips_reps_without_a_fresh_heartbeat(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "stale", capacity=5)
    await rep_factory(store, "fresh", capacity=5)
    await asyncio.sleep(0.4)
    await store.set_presence("fresh", "online")
    promo = await store.assign(lead(attributes={"source": "promo"}), "p@1")
    assert promo.assignment.rep_id == "fresh" and promo.assignment.queue == "promo"
    general = await store.assign(lead(), "p@2")
    assert general.assignment.rep_id == "stale", "the presence TTL alone still counts it online elsewhere"


async def test_priority_queue_prefers_the_best_ranked_rep(store_factory, rep_factory):
    store = await store_factory(ROUTING)
    await rep_factory(store, "junior", capacity=5, teams=["enterprise"], attributes={"rank": 2})
    await rep_factory(store, "senior", capacity=2, teams=["enterprise"], attributes={"rank": 9})
    await rep_factory(store, "outsider", capacity=5, attributes={"rank": 10})
    chosen = [(await store.assign(lead(priority=9), f"p@{n}")).assignment.rep_id for n in range(3)]
    assert chosen == ["senior", "senior", "junior"]


async def test_manual_reassign_respects_capacity_and_presence(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "a", capacity=1)
    await rep_factory(store, "b", capacity=1)
    await rep_factory(store, "away", capacity=1, status="away")
    first = await store.assign(lead("x"), "p@0")
    other = "b" if first.assignment.rep_id == "a" else "a"
    assert (await store.reassign("x", "away")).code == "conflict"
    assert (await store.reassign("x", "ghost")).code == "not_found"
    moved = await store.reassign("x", other)
    assert moved.ok and moved.assignments[0].reassigned and moved.assignments[0].rep_id == other
    assert await loads(store) == {"a": int(other == "a"), "b": int(other == "b"), "away": 0}
    record = await store.lead("x")
    assert [entry["event"] for entry in record["history"]] == ["accepted", "assigned", "reassigned"]


async def test_reroute_never_returns_the_lead_to_the_rep_it_leaves(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "only", capacity=2)
    await store.assign(lead("x"), "p@0")
    outcome = await store.reassign("x", None)
    assert outcome.ok and outcome.detail == "queued" and not outcome.assignments
    assert (await loads(store))["only"] == 0
    # Not later either: the rep's next close drains its queue, and the lead stays for someone else.
    await store.assign(lead("y"), "p@1")
    drained = await store.close("y", "won")
    assert not drained.assignments and (await store.lead("x"))["status"] == "queued"
    back = await store.reassign("x", "only")
    assert back.ok and back.assignments[0].rep_id == "only", "a supervisor who names the rep may give it back"


@pytest.mark.parametrize("seed", range(3))
async def test_random_workload_never_exceeds_capacity_or_leaks(store_factory, rep_factory, seed):
    rng = random.Random(seed)
    store = await store_factory()
    reps = {f"r{n}": rng.randint(0, 4) for n in range(8)}
    for rep_id, capacity in reps.items():
        await rep_factory(store, rep_id, capacity=capacity, status=rng.choice(["online", "online", "away"]))
    open_leads: set[str] = set()
    for step in range(300):
        action = rng.random()
        if action < 0.5:
            lead_id = f"l{step}"
            await store.assign(lead(lead_id, priority=rng.randint(0, 9)), f"p@{step}")
            open_leads.add(lead_id)
        elif action < 0.8 and open_leads:
            await store.close(rng.choice(sorted(open_leads)), "won")
        else:
            await store.set_presence(rng.choice(list(reps)), rng.choice(["online", "away", "offline"]))
    records = [await store.lead(lead_id) for lead_id in open_leads]
    held: dict[str, int] = {rep_id: 0 for rep_id in reps}
    for record in records:
        if record["status"] == "assigned":
            held[record["rep_id"]] += 1
    current = await loads(store)
    assert current == held, "every rep's load equals its open leads"
    assert all(current[rep_id] <= capacity for rep_id, capacity in reps.items())


async def test_leads_waiting_in_a_removed_queue_are_routed_again(store_factory, rep_factory):
    store = await store_factory("queues: {old: {members: {teams: [nobody]}}, new: {}}\ndefault_queue: old\n")
    await store.apply_routing(store.routing)
    await rep_factory(store, "r", capacity=1)
    assert (await store.assign(lead("stuck"), "p@0")).status == "queued"
    change = await store.apply_routing(parse_routing("queues: {new: {}}\n", "edited routing"))
    assert change.applied and change.rerouted == 1
    assert [(a.lead_id, a.rep_id, a.queue) for a in change.assignments] == [("stuck", "r", "new")]
    record = await store.lead("stuck")
    assert record["status"] == "assigned"
    rerouted = next(entry for entry in record["history"] if entry["event"] == "rerouted")
    assert rerouted["from_queue"] == "old" and "removed queue old" in rerouted["reason"]


async def test_a_reps_own_view_matches_its_entry_in_the_roster(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "one-number", capacity=3)
    await rep_factory(store, "per-channel", capacity={"web": 2, "chat": 1})
    await rep_factory(store, "other", capacity=5)
    for n in range(6):
        await store.assign(lead(channel="web"), f"p@{n}")
    roster = {rep["id"]: rep for rep in await store.reps()}
    assert sum(rep["load"] if isinstance(rep["load"], int) else sum(rep["load"].values())
               for rep in roster.values()) == 6
    for rep_id in ("one-number", "per-channel"):
        assert await store.reps([rep_id]) == [roster[rep_id]]
    assert roster["per-channel"]["load"]["chat"] == 0
    assert await store.reps(["ghost"]) == []


async def test_open_leads_of_an_unknown_rep_is_none_not_empty(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "idle")
    assert await store.open_leads_of("idle") == []
    assert await store.open_leads_of("ghost") is None


async def test_manual_moves_and_closes_name_their_actor_in_the_history(store_factory, rep_factory):
    store = await store_factory()
    for rep in ("first", "second"):
        await rep_factory(store, rep, capacity=1)
    decision = await store.assign(lead("named"), "test/0@0")
    other = "second" if decision.assignment.rep_id == "first" else "first"
    assert (await store.reassign("named", other, actor="supervisor:ana")).ok
    assert (await store.close("named", "won", actor="rep:" + other)).ok
    history = (await store.lead("named"))["history"]
    assert [(entry["event"], entry.get("by")) for entry in history] == [
        ("accepted", None), ("assigned", None), ("reassigned", "supervisor:ana"), ("closed", "rep:" + other)]


async def test_one_failing_step_is_that_leads_alone(store_factory, rep_factory):
    """A lead whose script fails (here a priority Redis cannot count with, which validation never
    lets through) comes back 'failed'; the leads around it in the batch are decided."""
    store = await store_factory()
    await rep_factory(store, "r", capacity=1)
    decisions = await store.assign_many([
        (lead("before"), "p@0"), (lead("broken", priority="urgent"), "p@1"), (lead("after"), "p@2")])
    assert [(d.lead_id, d.kind, d.status) for d in decisions] == [
        ("before", "new", "assigned"), ("broken", "failed", ""), ("after", "new", "queued")]
    assert "urgent" in decisions[1].error or "arithmetic" in decisions[1].error


async def test_a_batch_over_several_scripts_decides_each_lead_in_order_and_alone(store_factory, rep_factory):
    """assign_many sends LEADS_PER_SCRIPT leads to a script: leads of two channels mixed in every
    call, a failing lead inside the second call, and capacity running out part way. Each lead is
    decided in arrival order (the first ones of a channel take its capacity), the failing one
    alone fails, and nothing after it in its call is lost."""
    store = await store_factory()
    await rep_factory(store, "web-and-chat", capacity={"web": 20, "chat": 25})
    count = 3 * LEADS_PER_SCRIPT + 5
    broken = LEADS_PER_SCRIPT + 8  # a web lead once web is full: waiting needs a numeric priority
    leads = [lead(f"mixed-{n}", channel="chat" if n % 3 == 0 else "web") for n in range(count)]
    leads[broken]["priority"] = "urgent"
    decisions = await store.assign_many([(item, f"p@{n}") for n, item in enumerate(leads)])
    assert [d.lead_id for d in decisions] == [item["id"] for item in leads]
    assert decisions[broken].kind == "failed" and "arithmetic" in decisions[broken].error
    for channel, capacity in (("web", 20), ("chat", 25)):
        decided = [d for n, d in enumerate(decisions) if leads[n]["channel"] == channel and n != broken]
        assert [d.status for d in decided] == ["assigned"] * capacity + ["queued"] * (len(decided) - capacity)
    assert (await store.reps(["web-and-chat"]))[0]["load"] == {"web": 20, "chat": 25}
    again = await store.assign_many([(item, f"p@{n}") for n, item in enumerate(leads) if n != broken])
    assert {d.kind for d in again} == {"replay"}, "every decided lead is recognised as a replay, in any call"


async def test_the_assigned_lead_event_gives_the_reason_of_the_assignment_it_announces(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=1)
    for kind in ("new", "replay"):
        decision = await store.assign(lead("explained"), "p@0")
        (assigned,) = [event for event in decision.lead_events if event["event"] == "assigned"]
        facts = decision.assignment.facts
        assert decision.kind == kind and "facts" not in assigned
        assert assigned["reason"] == decision.assignment.reason == policy.reason("default", "load_aware", facts)


async def test_a_rep_taken_out_of_a_queue_never_gets_its_leads_again(store_factory, rep_factory):
    """A chat lead moves the rep's last-assignment time, which leaves its web entry in the vip
    index out of date. Once the rep leaves vip, healing that entry must drop it, not re-add it."""
    store = await store_factory(ROUTING)
    await rep_factory(store, "was-vip", capacity={"web": 2, "chat": 2}, teams=["enterprise"])
    assert (await store.assign(lead("chat-1", channel="chat", priority=9), "p@0")).assignment.rep_id == "was-vip"
    assert (await store.upsert_rep("was-vip", {"capacity": {"web": 2, "chat": 2}, "teams": []})).ok
    vip_lead = await store.assign(lead("vip-web", channel="web", priority=9), "p@1")
    assert vip_lead.status == "queued" and vip_lead.queue == "vip"
    assert await store.client.zrange(store.keys.queue_ready("vip", "web"), 0, -1) == []


async def test_a_drain_finds_a_plain_lead_behind_any_number_of_leads_nobody_can_take(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "plain", capacity=3, skills={"english": 5}, status="offline")
    waiting = [lead(f"klingon-{n}", skills=["klingon"], priority=n % 3) for n in range(400)]
    waiting += [lead("plain-old", priority=1), lead("english", skills=["english"], priority=1),
                lead("plain-urgent", priority=2), lead("both", skills=["english", "klingon"], priority=9)]
    for n, item in enumerate(waiting):
        assert (await store.assign(item, f"p@{n}")).status == "queued"
        await asyncio.sleep(0.002 if n >= 399 else 0)  # the last four a millisecond apart: their age decides
    outcome = await store.set_presence("plain", "online")
    assert [a.lead_id for a in outcome.assignments] == ["plain-urgent", "plain-old", "english"]


async def test_every_change_but_a_leads_own_decision_writes_its_event_into_the_outbox(store_factory, rep_factory):
    """A lead's own decision is announced by the worker that read it (its offset protects it); a
    drain, a close, a presence or profile change has no offset behind it and uses the outbox."""
    store = await store_factory()
    await rep_factory(store, "r", capacity=1)
    await store.assign(lead("first"), "p@0")
    await store.assign(lead("second"), "p@1")
    await store.close("first", "won", actor="rep:r")
    entries = await store.client.xrange(store.keys.outbox)
    described = [(fields["topic"], fields["key"], orjson.loads(fields.get("value") or "{}").get("type"))
                 for _, fields in entries]
    assert described == [
        ("rep-events", "r", "profile"), ("rep-events", "r", "presence"), ("lead-events", "first", "lead_event"),
        ("rep-events", "r", "lead_closed"), ("lead-events", "first", "lead_closed"),
        ("lead-events", "second", "lead_event"), ("assignments", "second", None)]
    archived = orjson.loads(entries[4][1]["value"])["lead"]
    assert [entry["event"] for entry in archived["history"]] == ["accepted", "assigned", "closed"]


async def test_closed_leads_are_forgotten_after_the_retention(store_factory, rep_factory):
    store = await store_factory()
    await rep_factory(store, "r", capacity=5)
    for lead_id in ("old", "recent", "open"):
        await store.assign(lead(lead_id), f"p@{lead_id}")
    await store.close("old", "won")
    await asyncio.sleep(0.05)
    await store.close("recent", "lost")
    assert await store.expire_closed(retention_s=0.03) == 1
    assert await store.lead("old") is None
    assert (await store.lead("recent"))["status"] == "closed"
    assert await store.expire_closed(retention_s=0) == 1
    assert (await store.lead("open"))["status"] == "assigned"
    assert await store.client.zcard(store.keys.closed_leads) == 0


async def test_a_rep_closes_only_a_lead_assigned_to_it_at_that_moment(store_factory, rep_factory):
    store = await store_factory()
    for rep in ("first", "second"):
        await rep_factory(store, rep, capacity=1)
    holder = (await store.assign(lead("moving"), "p@0")).assignment.rep_id
    other = "second" if holder == "first" else "first"
    assert (await store.reassign("moving", other)).ok
    refused = await store.close("moving", "won", actor=f"rep:{holder}", only_rep=holder)
    assert (refused.code, refused.detail) == ("forbidden", f"lead moving is not assigned to rep {holder}")
    assert (await store.lead("moving"))["status"] == "assigned"
    assert (await store.close("moving", "won", only_rep=other)).ok


async def test_a_lead_is_kept_exactly_as_it_was_sent(store_factory, rep_factory):
    """Redis's cjson writes 14 significant digits and turns [] into {}: the record keeps the body
    as sent, and a routing change routes a stranded lead by what was sent, not by a rounded copy."""
    store = await store_factory("queues: {nobody: {members: {teams: [none]}}}\n")
    sent = lead("exact", value=0.30000000000000004, attributes={"account": 123456789012345, "tags": []})
    assert await store.accept(sent) == "new"
    assert (await store.assign(sent, "p@0")).status == "queued"
    assert orjson.loads((await store.lead("exact"))["body"]) == sent
    await rep_factory(store, "r", capacity=1)
    change = await store.apply_routing(parse_routing(
        "queues: {exact: {}, rounded: {}}\n"
        "rules: [{when: {attributes: {account: 123456789012345}}, queue: exact}]\ndefault_queue: rounded\n", "v2"))
    assert [(a.lead_id, a.queue) for a in change.assignments] == [("exact", "exact")]
    await store.close("exact", "won")
    archived = next(orjson.loads(fields["value"]) for _, fields in await store.client.xrange(store.keys.outbox)
                    if fields.get("topic") == "lead-events" and '"lead_closed"' in fields["value"])
    assert archived["body"] == sent and archived["lead"]["outcome"] == "won"


async def test_a_reason_names_the_rule_the_queue_the_strategy_and_its_figures(store_factory, rep_factory):
    store = await store_factory("""
queues:
  enterprise: {strategy: priority, members: {teams: [enterprise]}}
  general: {}
rules:
  - {name: big grade A, when: {attributes: {grade: A}, value_gte: 10000}, queue: enterprise}
  - {when: {channel: chat}, queue: general}
default_queue: general
""")
    await rep_factory(store, "senior", capacity=4, teams=["enterprise"], attributes={"rank": 9})
    named = await store.assign(lead("big", value=20000, attributes={"grade": "A"}, priority=7), "r@1")
    assert named.assignment.reason.startswith(
        "rule 1 (big grade A) sent it to queue enterprise; priority: priority 7 lead to the best-ranked rep with room, "
        "rank 9, 0 of 4 open before this lead (0%), never assigned before"), named.assignment.reason
    numbered = await store.assign(lead("chat", channel="chat"), "r@2")
    assert numbered.assignment.reason.startswith("rule 2 sent it to queue general; load-aware: least loaded eligible "
                                                 "rep, 1 of 4 open before this lead (25%), idle "), numbered.assignment.reason
    unmatched = await store.assign(lead("plain", attributes={"grade": "B"}), "r@3")
    assert unmatched.assignment.reason.startswith("no rule matched, so the default queue general; load-aware: "
                                                  "least loaded eligible rep, 2 of 4 open"), unmatched.assignment.reason
    recorded = await store.lead("big")
    assert recorded["rule"] == "rule 1 (big grade A)" and recorded["facts"]["rule"] == recorded["rule"]


async def test_the_hybrid_example_sends_each_grade_where_it_says(store_factory, rep_factory):
    store = await store_factory((ROOT / "routing" / "hybrid.yaml").read_text())
    for rep_id in ("a1", "a2"):
        await rep_factory(store, rep_id, capacity=3, teams=["enterprise-a"])
    for rep_id in ("n1", "n2", "n3"):
        await rep_factory(store, rep_id, capacity=3, attributes={"level": "new"})
    await rep_factory(store, "senior", capacity=3, attributes={"level": "senior", "rank": 5})
    east = {"grade": "A", "industry": "manufacturing", "region": "east"}
    team_a = [await store.assign(lead(f"a{n}", attributes=east), f"h@a{n}") for n in range(2)]
    assert sorted(d.assignment.rep_id for d in team_a) == ["a1", "a2"], "least loaded: one each"
    assert team_a[0].assignment.reason.startswith("rule 1 (grade A manufacturing east) sent it to queue enterprise_a; "
                                                  "load-aware:")
    west = await store.assign(lead("west", attributes={**east, "region": "west"}), "h@w")
    assert (west.assignment.queue, west.assignment.rep_id) == ("seniors", "senior")
    grade_c = [await store.assign(lead(f"c{n}", attributes={"grade": "C"}), f"h@c{n}") for n in range(4)]
    assert [d.assignment.rep_id for d in grade_c] == ["n1", "n2", "n3", "n1"]
    assert grade_c[3].assignment.reason.startswith("rule 3 (grade C) sent it to queue new_reps; round robin:")
