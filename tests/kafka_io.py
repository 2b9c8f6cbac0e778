"""Plain aiokafka helpers for tests that talk to the broker as outside producers and consumers do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def bootstrap(broker_url: str) -> str:
    return broker_url.removeprefix("kafka://")


async def produce(broker_url: str, topic: str, records: Iterable[tuple[str | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker_url), linger_ms=1)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key.encode() if key else None, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_leads(broker_url: str, topic: str, leads: Iterable[dict[str, Any]]) -> None:
    await produce(broker_url, topic, ((lead["id"], orjson.dumps(lead)) for lead in leads))


async def read_topic(
    broker_url: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Every JSON record on the topic from the start, read until `until(records)` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap(broker_url),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met in {timeout_s} s; got {len(records)} records")
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                records.extend(orjson.loads(message.value) for message in messages)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Any], *, timeout_s: float = 20.0, every_s: float = 0.05) -> Any:
    """Polls an async or sync check until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s: {check}")
        await asyncio.sleep(every_s)
