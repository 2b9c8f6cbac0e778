"""The load test's witness of the topics: it must see every record, and its books (lost, assigned
twice, latency) must follow from what the topics hold."""

from __future__ import annotations

import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from loadtest.audit import audit_topics, peak_rate, read_topics
from tests.kafka_io import bootstrap


async def test_read_topics_returns_every_record_with_its_producer_timestamp(stack):
    topics = [f"read-{uuid.uuid4().hex[:8]}-{name}" for name in ("leads", "assignments")]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(stack.broker_url))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1) for topic in topics])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(stack.broker_url))
    await producer.start()
    try:
        for n in range(300):
            await producer.send(topics[n % 2], key=f"k{n}".encode(), value=f"v{n}".encode(), timestamp_ms=1_000 + n)
        await producer.flush()
    finally:
        await producer.stop()
    began = time.monotonic()
    records = await read_topics(bootstrap(stack.broker_url), topics, quiet_s=1.0)
    assert time.monotonic() - began < 30
    assert {topic: len(found) for topic, found in records.items()} == {topics[0]: 150, topics[1]: 150}
    assert sorted(records[topics[1]]) == [(1_000 + n, f"v{n}".encode()) for n in range(1, 300, 2)]


def lead(lead_id: str, at: int) -> tuple[int, bytes]:
    return at, orjson.dumps({"id": lead_id, "channel": "web"})


def event(lead_id: str, at: int, **fields: object) -> tuple[int, bytes]:
    return at, orjson.dumps({"lead_id": lead_id, **fields})


def test_the_topics_audit_counts_lost_doubled_and_latency_from_first_events():
    records = {
        "p.leads": [lead("a", 1_000), lead("b", 1_000), lead("c", 1_000), lead("a", 1_500), (1_000, b"not json")],
        "p.assignments": [
            event("a", 1_010, rep_id="r1"), event("a", 1_600, rep_id="r1"),  # a replay: the same rep again
            event("b", 1_100, rep_id="r1"), event("b", 1_200, rep_id="r2", reassigned=True),  # a supervisor's move
            event("d", 1_050, rep_id="r1"), event("d", 1_060, rep_id="r2"),  # two reps: doubled
        ],
    }
    result = audit_topics(records, "p.")
    assert (result.produced, result.assigned) == (3, 3)
    assert result.lost == ["c"]
    assert result.doubled == {"d": ["r1", "r2"]}
    assert result.latency_ms == {"p50": 10.0, "p95": 100.0, "p99": 100.0, "max": 100.0}
    assert result.last_assigned_ms == 1_100
    assert result.topic_lengths == {"leads": 5, "assignments": 6}


def test_a_relays_events_name_no_rep_and_count_as_assignments():
    result = audit_topics({"p.leads": [lead("a", 0), lead("b", 0)], "p.assignments": [event("a", 7)]}, "p.")
    assert (result.assigned, result.lost, result.doubled, result.latency_ms["p50"]) == (1, ["b"], {}, 7.0)


def test_peak_rate_is_the_busiest_window():
    assert peak_rate([0, 100, 200, 10_000, 10_050], window_s=1.0) == 3.0
    assert peak_rate([], window_s=10.0) == 0.0
