"""The consumer's fetch wait grows while the broker runs out of time and comes back to its floor
(dispatcher/fetch_wait.py); on the embedded broker that is what lets a consumer read a long topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dispatcher.fetch_wait import AdaptiveFetchWait
from tests.kafka_io import bootstrap


def test_starvation_doubles_the_wait_up_to_the_ceiling():
    fetch_wait = AdaptiveFetchWait(5, 100)
    assert [fetch_wait.after_fetch(starved=True, delivered=False) for _ in range(6)] == [10, 20, 40, 80, 100, 100]


def test_deliveries_take_the_wait_down_to_exactly_the_floor():
    fetch_wait = AdaptiveFetchWait(5, 1000)
    for _ in range(8):
        fetch_wait.after_fetch(starved=True, delivered=False)
    waits = [fetch_wait.after_fetch(starved=False, delivered=True) for _ in range(60)]
    assert waits[:3] == [900, 810, 729]
    assert waits[-1] == 5 and fetch_wait.wait_ms == 5


def test_a_fetch_that_neither_starved_nor_delivered_leaves_the_wait_alone():
    changes: list[float] = []
    fetch_wait = AdaptiveFetchWait(5, 1000, on_change=changes.append)
    fetch_wait.after_fetch(starved=True, delivered=False)
    assert fetch_wait.after_fetch(starved=False, delivered=False) == 10
    assert changes == [0.01]


def test_on_change_hears_each_new_wait_in_seconds():
    changes: list[float] = []
    fetch_wait = AdaptiveFetchWait(5, 1000, on_change=changes.append)
    fetch_wait.after_fetch(starved=True, delivered=False)
    fetch_wait.after_fetch(starved=False, delivered=True)
    for _ in range(20):
        fetch_wait.after_fetch(starved=False, delivered=True)
    assert changes[:2] == pytest.approx([0.01, 0.009])
    assert changes[-1] == 0.005 and changes.count(0.005) == 1


def test_a_ceiling_under_the_floor_holds_the_wait_at_the_floor():
    assert AdaptiveFetchWait(50, 10).after_fetch(starved=True, delivered=False) == 50


def test_a_floor_of_zero_still_grows():
    assert AdaptiveFetchWait(0, 100).after_fetch(starved=True, delivered=False) == 2


# What a fetch of partition 0 from offset 10 can come back to, as aiokafka's response handling
# leaves the partition's state and the fetcher's buffer. The high watermark 100 is from an earlier
# fetch: the partition is behind.
TP = TopicPartition("leads", 0)
ASKED_OFFSET = 10


@dataclass
class PartitionState:
    """The parts of aiokafka's TopicPartitionState the fetch wait reads."""

    position: int = ASKED_OFFSET
    highwater: int | None = 100
    timestamp: int | None = None
    has_valid_position: bool = True


@dataclass
class Fetcher:
    answer: Callable[[Fetcher, PartitionState], bool]
    _fetch_max_wait_ms: int = 5
    _records: dict = field(default_factory=dict)

    async def _proc_fetch_request(self, assignment, node_id, request):
        return self.answer(self, assignment.state_value(TP))


def ran_out_of_time(fetcher, state):
    state.timestamp = 1
    return False


def caught_up(fetcher, state):
    state.timestamp, state.highwater = 1, ASKED_OFFSET
    return False


def delivered(fetcher, state):
    state.timestamp = 1
    fetcher._records[TP] = "records"
    return True


def failed(fetcher, state):
    """An error answer or none: aiokafka leaves the state as it was."""
    return False


def discarded_after_a_seek(fetcher, state):
    state.position = 50
    return False


@pytest.mark.parametrize(
    ("answer", "active", "next_wait_ms"),
    [
        (ran_out_of_time, True, 10),
        (ran_out_of_time, False, 5),  # the assignment changed meanwhile
        (caught_up, True, 5),
        (delivered, True, 5),
        (failed, True, 5),
        (discarded_after_a_seek, True, 5),
    ],
)
async def test_only_an_empty_answer_for_a_partition_behind_counts_as_starved(answer, active, next_wait_ms):
    fetcher = Fetcher(answer)
    AdaptiveFetchWait(5, 1000).install(SimpleNamespace(_fetcher=fetcher))
    assignment = SimpleNamespace(active=active, state_value={TP: PartitionState()}.get)
    request = SimpleNamespace(topics=[(TP.topic, [(TP.partition, ASKED_OFFSET, 1 << 20)])])
    assert await fetcher._proc_fetch_request(assignment, 0, request) is (answer is delivered)
    assert fetcher._fetch_max_wait_ms == next_wait_ms


# 10,000 one-record batches a partition: a plain 5 ms consumer reads a few hundred of them in 10 s
# on Tansu (15,000 a partition: none; 7,500: a third; 5,000: all, in 3.6 s).
LONG_TOPIC_PARTITIONS = 4
LONG_TOPIC_RECORDS = 40_000


async def produce_small_batches(broker_url: str, topic: str, count: int) -> None:
    """One record a batch: one to each partition in turn, then wait for those to be written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker_url), linger_ms=0)
    await producer.start()
    try:
        for n in range(count):
            delivery = await producer.send(topic, value=b"%d" % n, partition=n % LONG_TOPIC_PARTITIONS)
            if n % LONG_TOPIC_PARTITIONS == LONG_TOPIC_PARTITIONS - 1:
                await delivery
        await producer.flush()
    finally:
        await producer.stop()


async def records_read(broker_url: str, topic: str, within_s: float, fetch_wait: AdaptiveFetchWait | None) -> int:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap(broker_url), group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=5,
    )
    await consumer.start()
    if fetch_wait:
        fetch_wait.install(consumer)
    count = 0
    deadline = time.monotonic() + within_s
    try:
        while count < LONG_TOPIC_RECORDS and time.monotonic() < deadline:
            count += sum(map(len, (await consumer.getmany(timeout_ms=200)).values()))
    finally:
        await consumer.stop()
    return count


async def test_a_long_topic_of_small_batches_is_read_whole_only_with_the_adaptive_wait(stack):
    topic = f"long-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(stack.broker_url))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, LONG_TOPIC_PARTITIONS, 1)])
    finally:
        await admin.close()
    await produce_small_batches(stack.broker_url, topic, LONG_TOPIC_RECORDS)

    plain = await records_read(stack.broker_url, topic, 5, None)
    assert plain < LONG_TOPIC_RECORDS, "a fixed 5 ms wait read the whole topic: it is too short to show the stall"

    waits_s: list[float] = []
    adaptive = await records_read(stack.broker_url, topic, 60, AdaptiveFetchWait(5, 1000, on_change=waits_s.append))
    assert adaptive == LONG_TOPIC_RECORDS, f"read {adaptive} of {LONG_TOPIC_RECORDS} in 60 s"
    assert max(waits_s) > 0.005
