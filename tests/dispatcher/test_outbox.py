"""The outbox relay against the real redis-server and broker: every event a step wrote reaches
Kafka, once Kafka has it the entry is gone, a failed send is sent again, and a dead worker's
events are taken over. Copies a resend makes carry the same event_id."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from dispatcher.outbox import GROUP, OutboxRelay
from tests.dispatcher.state.conftest import lead, rep_factory, store_factory  # noqa: F401 - fixtures shared with the Redis tests
from tests.kafka_io import bootstrap, read_topic


@pytest.fixture
async def producer(stack):
    started = AIOKafkaProducer(bootstrap_servers=bootstrap(stack.broker_url), linger_ms=1)
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def relay_factory(producer):
    prefix = f"o{uuid.uuid4().hex[:8]}."

    def make(store, consumer: str = "w1", *, fail_first: int = 0, claim_idle_ms: int = 5000) -> OutboxRelay:
        failures = {"left": fail_first}

        async def produce(topic: str, key: bytes, value: bytes) -> asyncio.Future:
            if failures["left"] > 0:
                failures["left"] -= 1
                refused: asyncio.Future = asyncio.get_running_loop().create_future()
                refused.set_exception(ConnectionError("the broker refused the record"))
                return refused
            return await producer.send(topic, value, key=key)

        relay = OutboxRelay(store.client, store.keys.outbox, consumer, produce, lambda name: prefix + name,
                            block_ms=50, claim_idle_ms=claim_idle_ms)
        relay.prefix = prefix
        return relay

    return make


async def busy_store(store_factory, rep_factory):
    """A store whose steps wrote events: two reps, three decisions (one waits), a close that drains."""
    store = await store_factory()
    await rep_factory(store, "r1", capacity=1)
    await rep_factory(store, "r2", capacity=1)
    for lead_id in ("a", "b", "c"):
        await store.assign(lead(lead_id), f"p@{lead_id}")
    await store.close("a", "won")
    return store


async def relay_until_empty(relay: OutboxRelay) -> None:
    while await relay.client.xlen(relay.stream):
        try:
            await relay.relay_once()
        except ConnectionError:
            pass


async def test_every_event_reaches_kafka_with_its_id_and_leaves_the_outbox(store_factory, rep_factory, relay_factory, stack):
    store = await busy_store(store_factory, rep_factory)
    written = [entry_id for entry_id, _ in await store.client.xrange(store.keys.outbox)]
    relay = relay_factory(store)
    await relay_until_empty(relay)
    assignments = await read_topic(stack.broker_url, relay.prefix + "assignments", until=lambda r: len(r) >= 1)
    rep_events = await read_topic(stack.broker_url, relay.prefix + "rep-events", until=lambda r: len(r) >= 5)
    # The close's history entry, the closed record, and the drain's history entry.
    archived = await read_topic(stack.broker_url, relay.prefix + "lead-events", until=lambda r: len(r) >= 3)
    (drained,) = assignments
    assert (drained["lead_id"], drained["rep_id"]) == ("c", "r1"), "drained by the close; a and b were announced by their decider"
    assert sorted(e["type"] for e in rep_events) == ["lead_closed", "presence", "presence", "profile", "profile"]
    # Keyed by lead, so ordered within a lead only: lead a's two events, lead c's one.
    of_a = [e for e in archived if e.get("lead_id", e.get("lead", {}).get("id")) == "a"]
    of_c = [e for e in archived if e.get("lead_id") == "c"]
    assert [(e["type"], e.get("event")) for e in of_a] == [("lead_event", "closed"), ("lead_closed", None)]
    assert of_a[1]["lead"]["outcome"] == "won"
    assert [(e["type"], e.get("event")) for e in of_c] == [("lead_event", "assigned")] and "reason" in of_c[0]
    assert sorted(e["event_id"] for e in assignments + rep_events + archived) == sorted(written)
    assert await store.client.xpending(store.keys.outbox, GROUP) == {
        "pending": 0, "min": None, "max": None, "consumers": []}


async def test_a_send_kafka_refused_is_sent_again(store_factory, rep_factory, relay_factory, stack):
    store = await busy_store(store_factory, rep_factory)
    written = {entry_id for entry_id, _ in await store.client.xrange(store.keys.outbox)}
    relay = relay_factory(store, fail_first=2)
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert await store.client.xlen(store.keys.outbox) == len(written), "nothing acknowledged"
    relay._own_pending = True  # as run() does after a failed round
    await relay_until_empty(relay)
    seen = []
    for name in ("assignments", "rep-events", "lead-events"):
        seen += await read_topic(stack.broker_url, relay.prefix + name, until=lambda r: len(r) >= 1)
    assert {e["event_id"] for e in seen} == written, "each event at least once; copies share their id"


async def test_events_a_dead_worker_took_are_taken_over(store_factory, rep_factory, relay_factory, stack):
    store = await busy_store(store_factory, rep_factory)
    written = {entry_id for entry_id, _ in await store.client.xrange(store.keys.outbox)}
    dead = relay_factory(store, "dead")
    await dead._ensure_group()
    taken = await dead._read(">", block_ms=None)
    assert {entry_id for entry_id, _ in taken} == written
    survivor = relay_factory(store, "alive", claim_idle_ms=100)
    assert await survivor.relay_once() == 0, "not idle long enough yet"
    await asyncio.sleep(0.15)
    assert await survivor.relay_once() == len(written)
    assert await store.client.xlen(store.keys.outbox) == 0


async def test_an_unreadable_entry_goes_to_the_dead_letters_and_holds_nothing_back(store_factory, rep_factory,
                                                                                   relay_factory, stack):
    store = await busy_store(store_factory, rep_factory)
    written = await store.client.xlen(store.keys.outbox)
    await store.client.xadd(store.keys.outbox, {"topic": "assignments", "key": "x", "row": "{not json"})
    relay = relay_factory(store)
    await relay_until_empty(relay)
    (dead,) = await read_topic(stack.broker_url, relay.prefix + "leads-dlq", until=lambda r: len(r) >= 1)
    assert dead["kind"] == "unrelayable" and dead["value"]["row"] == "{not json"
    sent = []
    for name, count in (("rep-events", 5), ("assignments", 1), ("lead-events", 1)):
        sent += await read_topic(stack.broker_url, relay.prefix + name, until=lambda r, count=count: len(r) >= count)
    assert len(sent) == written, "every readable event went out beside it"
