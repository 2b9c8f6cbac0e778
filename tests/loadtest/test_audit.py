"""The load test's witness of the topics: it must see every record, including on topics that are
created only after it starts (the workers declare them as they come up)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from loadtest.audit import TopicTail, peak_rate
from tests.kafka_io import bootstrap


async def test_the_tail_reads_topics_created_after_it_started(stack):
    topics = [f"tail-{uuid.uuid4().hex[:8]}-{name}" for name in ("leads", "assignments")]
    tail = TopicTail(bootstrap(stack.broker_url), topics)
    starting = asyncio.create_task(asyncio.to_thread(tail.start))
    await asyncio.sleep(1.0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(stack.broker_url))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1) for topic in topics])
    finally:
        await admin.close()
    await starting
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(stack.broker_url))
    await producer.start()
    try:
        for n in range(300):
            await producer.send(topics[n % 2], key=f"k{n}".encode(), value=f"v{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    records = await asyncio.to_thread(tail.finish, quiet_s=1.0)
    assert {topic: len(found) for topic, found in records.items()} == {topics[0]: 150, topics[1]: 150}
    assert sorted(value for _, value in records[topics[1]]) == sorted(f"v{n}".encode() for n in range(1, 300, 2))


def test_peak_rate_is_the_busiest_window():
    assert peak_rate([0, 100, 200, 10_000, 10_050], window_s=1.0) == 3.0
    assert peak_rate([], window_s=10.0) == 0.0
