"""A routing change is one atomic, versioned step: every store (every worker) decides with the
routing in force, stranded leads are routed again with a reason, and a change that cannot be
applied safely is refused with reasons, changing nothing."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.routing import parse_routing
from dispatcher.state.keys import Keys
from dispatcher.state.layout import connect
from dispatcher.state.results import RoutingRefused
from dispatcher.state.store import Store
from tests.dispatcher.state.conftest import lead

TWO_QUEUES = """
channels: [web, chat, sms]
queues:
  spanish: {members: {skills: {spanish: 1}}}
  general: {}
rules:
  - {when: {attributes: {language: es}}, queue: spanish}
default_queue: general
"""


def routing(text: str):
    return parse_routing(text, "test routing")


def twin(store: Store, stack) -> Store:
    """A second worker's store: the same workspace, its own connection, the routing it started with."""
    return Store(connect(stack.redis_url, 4), Keys(store.keys.workspace), store.routing, presence_ttl_s=60)


async def test_a_worker_holding_an_old_routing_decides_with_the_new_one(store_factory, rep_factory, stack):
    first = await store_factory(TWO_QUEUES)
    await first.apply_routing(first.routing)
    second = twin(first, stack)
    await rep_factory(first, "ana", capacity=3, skills={"spanish": 5})
    await rep_factory(first, "bob", capacity=3)
    assert (await second.assign(lead("es-1", attributes={"language": "es"}), "p@0")).queue == "spanish"
    change = await first.apply_routing(routing("queues: {everyone: {}}\n"))
    assert change.applied and change.version == "2"
    decision = await second.assign(lead("es-2", attributes={"language": "es"}), "p@1")
    assert decision.queue == "everyone" and second.routing_version == "2"
    await second.client.aclose()


async def test_applying_the_routing_in_force_again_changes_nothing(store_factory):
    store = await store_factory(TWO_QUEUES)
    assert (await store.apply_routing(store.routing)).version == "1"
    again = await store.apply_routing(routing(TWO_QUEUES))
    assert not again.applied and again.version == "1"
    history = await store.client.lrange(store.keys.routing_history, 0, -1)
    assert len(history) == 1


async def test_dropping_a_channel_leads_wait_on_is_refused_and_changes_nothing(store_factory, rep_factory):
    store = await store_factory(TWO_QUEUES)
    await store.apply_routing(store.routing)
    assert (await store.assign(lead("texting", channel="sms"), "p@0")).status == "queued"
    with pytest.raises(RoutingRefused) as refused:
        await store.apply_routing(routing("channels: [web, chat]\nqueues: {general: {}}\n"))
    assert refused.value.reasons == ["queue general: 1 lead waits on channel sms, which this routing drops; "
                                     "let them be served or close them first, or keep the channel"]
    assert store.routing_version == "1" and (await store.lead("texting"))["status"] == "queued"
    await rep_factory(store, "r", capacity=1)
    assert (await store.lead("texting"))["status"] == "assigned", "the old routing still serves it"


async def test_dropping_a_channel_a_reps_capacity_names_is_refused(store_factory, rep_factory):
    store = await store_factory(TWO_QUEUES)
    await store.apply_routing(store.routing)
    await rep_factory(store, "texter", capacity={"sms": 2, "web": 1})
    with pytest.raises(RoutingRefused) as refused:
        await store.apply_routing(routing("channels: [web, chat]\n"))
    assert refused.value.reasons == [
        "rep texter's capacity names channel sms, which this routing drops; change the rep's capacity first"]


async def test_a_lead_open_on_a_dropped_channel_still_closes_and_frees_its_unit(store_factory, rep_factory):
    store = await store_factory(TWO_QUEUES)
    await store.apply_routing(store.routing)
    await rep_factory(store, "r", capacity=1)
    assert (await store.assign(lead("sms-1", channel="sms"), "p@0")).assignment.rep_id == "r"
    await store.apply_routing(routing("channels: [web, chat]\n"))
    assert (await store.reassign("sms-1", None)).code == "conflict"
    assert (await store.assign(lead("web-1"), "p@1")).status == "queued"
    closed = await store.close("sms-1", "won")
    assert [a.lead_id for a in closed.assignments] == ["web-1"]
    assert (await store.reps(["r"]))[0]["load"] == 1


async def test_leads_routed_while_the_routing_changes_are_never_stranded(store_factory, rep_factory, stack):
    """Workers keep deciding while another applies a change that removes their queue: every lead
    ends in a queue of the new routing or with a rep, none waits in the removed queue."""
    store = await store_factory(TWO_QUEUES)
    await store.apply_routing(store.routing)
    workers = [twin(store, stack) for _ in range(3)]

    async def keep_deciding(worker: Store, name: str) -> None:
        for n in range(60):
            await worker.assign(lead(f"{name}-{n}", attributes={"language": "es"}), f"{name}@{n}")

    await asyncio.gather(*(keep_deciding(w, f"w{i}") for i, w in enumerate(workers)),
                         store.apply_routing(routing("channels: [web, chat, sms]\nqueues: {general: {}}\n")))
    records = [await store.lead(f"w{i}-{n}") for i in range(3) for n in range(60)]
    assert {r["queue"] for r in records} == {"general"}
    assert await store.client.zcard(store.keys.queue_wait("spanish", "web")) == 0
    assert await store.client.exists(store.keys.queue_wait_index("spanish", "web")) == 0
    for worker in workers:
        await worker.client.aclose()


async def test_a_store_whose_routing_vanished_from_redis_keeps_deciding_with_the_one_in_hand(store_factory, rep_factory):
    store = await store_factory(TWO_QUEUES)
    await store.apply_routing(store.routing)
    await rep_factory(store, "r", capacity=2)
    await store.client.delete(store.keys.routing)  # as a flushed or replaced Redis would have it
    assert (await store.assign(lead("after-flush"), "p@0")).assignment.rep_id == "r"
    assert store.routing_version == "0"
    assert (await store.apply_routing(store.routing)).version == "1"


async def test_the_routing_in_force_and_its_history_say_what_who_and_when(store_factory):
    store = await store_factory(TWO_QUEUES)
    assert await store.routing_in_force() is None and await store.routing_history() == []
    await store.apply_routing(store.routing, by="w1 (file routing.yaml)")
    text = "# one queue for everyone\nqueues: {everyone: {}}\n"
    await store.apply_routing(routing(text), by="w2 (file routing.yaml)")
    in_force = await store.routing_in_force()
    assert (in_force["version"], in_force["text"], in_force["by"]) == ("2", text, "w2 (file routing.yaml)")
    assert list(in_force["spec"]["queues"]) == ["everyone"]
    history = await store.routing_history()
    assert [(entry["version"], entry["by"]) for entry in history] == [("2", "w2 (file routing.yaml)"),
                                                                      ("1", "w1 (file routing.yaml)")]
    assert history[0]["fingerprint"] == in_force["fingerprint"] and history[0]["applied_at"].endswith("Z")


async def test_a_stale_worker_moves_a_lead_by_the_routing_in_force(store_factory, rep_factory, stack):
    """The arguments of a step that come from the routing (here the queue a lead falls back to)
    are built again with it when the routing changed under the step."""
    first = await store_factory(TWO_QUEUES)
    await first.apply_routing(first.routing)
    await rep_factory(first, "r1", capacity=1)
    await rep_factory(first, "r2", capacity=1)
    second = twin(first, stack)
    assert (await first.assign(lead("moving"), "p@0")).status == "assigned"
    await first.apply_routing(routing("queues: {everyone: {}}\n"))
    moved = await second.reassign("moving", None)
    assert moved.ok and moved.assignments[0].queue == "everyone"
    await second.client.aclose()
