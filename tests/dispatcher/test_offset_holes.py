"""The offset-hole guard (dispatcher/offset_holes.py): on aiokafka's own record batches, a fetched
run stops before a skipped offset and the next fetch asks for it again, until it fills or stays open
for the patience; on the real broker, a guarded consumer reads a partition whole."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import aiokafka
import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from dispatcher.offset_holes import OffsetHoleGuard

TP = aiokafka.TopicPartition("leads", 3)


def fetched(offsets: list[int], fetch_offset: int) -> PartitionRecords:
    """What aiokafka makes of a fetch at `fetch_offset` that brought one batch of `offsets`."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for offset in offsets:
        builder.append(offset - offsets[0], timestamp=None, key=b"k", value=f"lead at {offset}".encode(), headers=[])
    batch = bytearray(builder.build())
    # The broker writes the base offset; the CRC does not cover it.
    struct.pack_into(">q", batch, 0, offsets[0])
    return PartitionRecords(TP, MemoryRecords(bytes(batch)), [], fetch_offset, None, None, True, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read(guard: OffsetHoleGuard, records: PartitionRecords) -> tuple[list[int], int]:
    guard.guard(TP, records)
    return [record.offset for record in records], records.next_fetch_offset


def test_a_run_stops_before_its_first_hole_and_the_next_fetch_asks_for_the_hole():
    heard: list[str] = []
    guard = OffsetHoleGuard(2.0, on_hole=heard.append, clock=Clock())
    assert read(guard, fetched([5, 6, 8, 9], 5)) == ([5, 6], 7)
    assert read(guard, fetched([8, 9], 7)) == ([], 7), "records that start past the offset asked for wait too"
    assert read(guard, fetched([7, 8, 9], 7)) == ([7, 8, 9], 10), "once it fills, the run reads on"
    assert heard == ["refetched", "refetched"]


def test_a_filled_hole_met_again_after_a_seek_back_gets_the_whole_patience():
    clock = Clock()
    guard = OffsetHoleGuard(2.0, clock=clock)
    assert read(guard, fetched([8], 7)) == ([], 7)
    assert read(guard, fetched([7, 8], 7)) == ([7, 8], 9)
    clock.now += 5.0
    # Read again from the committed offset (a rebalance), the broker shows the same hole once more.
    assert read(guard, fetched([5, 6, 8], 5)) == ([5, 6], 7)


def test_without_a_hole_the_guard_changes_nothing():
    heard: list[str] = []
    guard = OffsetHoleGuard(2.0, on_hole=heard.append, clock=Clock())
    assert read(guard, fetched([5, 6, 7], 5)) == ([5, 6, 7], 8)
    assert read(guard, fetched([3, 4, 5, 6], 5)) == ([5, 6], 7), "what comes before the offset asked is skipped as ever"
    assert heard == []


def test_a_hole_that_stays_open_for_the_patience_is_read_past_with_a_warning(caplog: pytest.LogCaptureFixture):
    heard: list[str] = []
    clock = Clock()
    guard = OffsetHoleGuard(2.0, on_hole=heard.append, clock=clock)
    assert read(guard, fetched([8, 9], 7)) == ([], 7)
    clock.now += 1.9
    assert read(guard, fetched([8, 9], 7)) == ([], 7), "the patience runs from the first meeting"
    clock.now += 0.1
    assert read(guard, fetched([8, 9], 7)) == ([8, 9], 10)
    assert heard == ["refetched", "refetched", "taken"]
    assert "offsets 7 to 7 stayed unreadable for 2.0 s; reading on from 8" in caplog.text
    # A later hole gets the whole patience again.
    assert read(guard, fetched([12], 10)) == ([], 10)
    assert heard[-1] == "refetched"


def test_each_partition_and_each_hole_has_its_own_clock():
    clock = Clock()
    guard = OffsetHoleGuard(2.0, clock=clock)
    other = aiokafka.TopicPartition("leads", 0)
    guard.guard(TP, records := fetched([8], 7))
    assert list(records) == []
    clock.now += 1.5
    guard.guard(other, records := fetched([8], 7))
    assert list(records) == [], "another partition's hole at the same offset starts its own clock"
    assert read(guard, fetched([11], 10)) == ([], 10), "a new hole on the partition starts its clock again"
    clock.now += 1.5
    assert read(guard, fetched([11], 10)) == ([], 10)
    clock.now += 0.5
    guard.guard(other, records := fetched([8], 7))
    assert [record.offset for record in records] == [8]


async def test_a_guarded_consumer_reads_a_partition_of_the_real_broker_whole(stack: Any):
    topic = f"holes-{uuid.uuid4().hex[:8]}"
    bootstrap = stack.broker_url.removeprefix("kafka://")
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(300):
            await producer.send(topic, f"{n}".encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    heard: list[str] = []
    guarded: list[aiokafka.TopicPartition] = []

    class Guard(OffsetHoleGuard):
        def guard(self, tp: aiokafka.TopicPartition, records: PartitionRecords) -> None:
            guarded.append(tp)
            super().guard(tp, records)

    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        Guard(2.0, on_hole=heard.append).install(consumer)
        tp = aiokafka.TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        offsets: list[int] = []
        while len(offsets) < 300:
            batches = await consumer.getmany(tp, timeout_ms=5000)
            assert batches, f"nothing more after {len(offsets)} records"
            offsets += [message.offset for message in batches[tp]]
    finally:
        await consumer.stop()
    assert offsets == list(range(300)) and heard == []
    assert guarded and set(guarded) == {tp}, "every fetch that brought records went through the guard"
