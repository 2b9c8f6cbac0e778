"""Leads are acknowledged, and so committed, only as a prefix of each partition: a batch that
finishes before an earlier one waits for it, and a failed batch is never passed. The tracker
alone (fake events), NaturalBatches with a fake stream, then a real faust worker on the real
broker (tests/dispatcher/batches_worker.py) killed with a hole in flight."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP, Message
from hypothesis import given, note, settings
from hypothesis import strategies as st

from dispatcher.app import leads_topic
from dispatcher.batches import NaturalBatches, OffsetOrderAcks
from dispatcher.embedded import _die_with_parent, free_port
from tests.kafka_io import bootstrap, eventually


class FakeMessage:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset = tp, offset


class FakeEvent:
    def __init__(self, partition: int, offset: int, value: bytes = b"") -> None:
        self.message, self.value = FakeMessage(TP("leads", partition), offset), value

    def __repr__(self) -> str:
        return f"p{self.message.tp.partition}@{self.message.offset}"


def arrivals(partitions: list[int]) -> list[FakeEvent]:
    """Events in the order they arrive, each partition's offsets counting up from 0."""
    next_offset: dict[int, int] = defaultdict(int)
    events = []
    for partition in partitions:
        events.append(FakeEvent(partition, next_offset[partition]))
        next_offset[partition] += 1
    return events


@st.composite
def batch_schedules(draw: st.DrawFn, *, with_failures: bool) -> dict:
    """Arrivals over up to three partitions, cut into consecutive batches as NaturalBatches cuts
    them; each batch finishes (or, with failures, may never finish) after its own number of
    turns of the loop, and each ack takes a few, so batches finish and ack in any order."""
    events = arrivals(draw(st.lists(st.integers(0, 2), min_size=1, max_size=30)))
    cuts = sorted(draw(st.sets(st.integers(1, len(events) - 1), max_size=len(events) - 1)) if len(events) > 1 else set())
    bounds = [0, *cuts, len(events)]
    batches = [events[start:end] for start, end in itertools.pairwise(bounds)]
    return {
        "events": events,
        "batches": batches,
        "arrival_turns": draw(st.lists(st.integers(0, 3), min_size=len(events), max_size=len(events))),
        "finish_turns": draw(st.lists(st.integers(0, 12), min_size=len(batches), max_size=len(batches))),
        "failed": draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
        if with_failures else [False] * len(batches),
        "ack_turns": draw(st.randoms(use_true_random=False)),
    }


def play(schedule: dict) -> dict[TP, list[int]]:
    """Runs the schedule through the tracker on a loop of its own; returns each partition's acked
    offsets in ack order, checking after every ack that they are the partition's first arrivals."""
    note(f"batches {schedule['batches']}, never finished {schedule['failed']}")
    arrived_offsets: dict[TP, list[int]] = defaultdict(list)
    acked: dict[TP, list[int]] = defaultdict(list)

    async def ack(event: FakeEvent) -> None:
        # An ack that takes turns of the loop before it lands, as one that does I/O would.
        for _ in range(schedule["ack_turns"].randint(0, 2)):
            await asyncio.sleep(0)
        tp = event.message.tp
        acked[tp].append(event.message.offset)
        assert acked[tp] == arrived_offsets[tp][: len(acked[tp])], f"{tp}: acked {acked[tp]}"

    async def scenario() -> None:
        tracker = OffsetOrderAcks(ack)
        last_arrived = {id(batch[-1]): asyncio.Event() for batch in schedule["batches"]}

        async def arrive() -> None:
            for event, turns in zip(schedule["events"], schedule["arrival_turns"], strict=True):
                for _ in range(turns):
                    await asyncio.sleep(0)
                tracker.arrived(event)
                arrived_offsets[event.message.tp].append(event.message.offset)
                if id(event) in last_arrived:
                    last_arrived[id(event)].set()

        async def finish(batch: list[FakeEvent], turns: int, failed: bool) -> None:
            await last_arrived[id(batch[-1])].wait()
            for _ in range(turns):
                await asyncio.sleep(0)
            if not failed:
                await tracker.finished(batch)

        await asyncio.gather(arrive(), *(
            finish(batch, turns, failed)
            for batch, turns, failed in zip(schedule["batches"], schedule["finish_turns"], schedule["failed"], strict=True)
        ))

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    return acked


def offsets_by_partition(events: list[FakeEvent]) -> dict[TP, list[int]]:
    by_partition: dict[TP, list[int]] = defaultdict(list)
    for event in events:
        by_partition[event.message.tp].append(event.message.offset)
    return by_partition


@settings(max_examples=300, deadline=None)
@given(batch_schedules(with_failures=False))
def test_acks_are_always_a_prefix_of_each_partition_and_all_come_once_every_batch_finished(schedule):
    acked = play(schedule)
    assert acked == offsets_by_partition(schedule["events"])


@settings(max_examples=300, deadline=None)
@given(batch_schedules(with_failures=True))
def test_nothing_is_acked_past_a_batch_that_never_finishes(schedule):
    never_finished = {id(event) for batch, failed in zip(schedule["batches"], schedule["failed"]) if failed
                      for event in batch}
    expected: dict[TP, list[int]] = defaultdict(list)
    blocked: set[TP] = set()
    for event in schedule["events"]:
        tp = event.message.tp
        if id(event) in never_finished:
            blocked.add(tp)
        elif tp not in blocked:
            expected[tp].append(event.message.offset)
    acked = play(schedule)
    assert {tp: offsets for tp, offsets in acked.items() if offsets} == {tp: o for tp, o in expected.items() if o}


class FakeApp:
    def __init__(self) -> None:
        self.crashed_with: list[BaseException] = []

    async def crash(self, reason: BaseException) -> None:
        self.crashed_with.append(reason)


class FakeStream:
    def __init__(self) -> None:
        self.app, self.acked = FakeApp(), []

    async def ack(self, event: FakeEvent) -> None:
        self.acked.append(event)


class ControlledDecide:
    """Each batch's decision waits until the test releases it, with a delivery or an error."""

    def __init__(self) -> None:
        self.batches: list[list[FakeEvent]] = []
        self.outcomes: list[asyncio.Future] = []
        self.called = asyncio.Event()

    async def __call__(self, events):
        self.batches.append(list(events))
        outcome = asyncio.get_running_loop().create_future()
        self.outcomes.append(outcome)
        self.called.set()
        return await outcome

    async def nth_batch(self, n: int) -> list[FakeEvent]:
        await eventually(lambda: len(self.batches) > n, timeout_s=2, every_s=0.001)
        return self.batches[n]


async def test_a_batch_that_finishes_first_waits_for_the_earlier_one_on_its_partition():
    stream, decide = FakeStream(), ControlledDecide()
    batches = NaturalBatches(stream, 10, decide)
    first, second, other_partition = FakeEvent(0, 0), FakeEvent(0, 1), FakeEvent(1, 0)
    await batches.add(first)
    assert await decide.nth_batch(0) == [first]
    await batches.add(second)
    await batches.add(other_partition)
    assert await decide.nth_batch(1) == [second, other_partition]

    decide.outcomes[1].set_result([])
    await eventually(lambda: stream.acked == [other_partition], timeout_s=2, every_s=0.001)
    await asyncio.sleep(0.01)
    assert stream.acked == [other_partition], "the second lead of partition 0 waits for the first"
    decide.outcomes[0].set_result([])
    await eventually(lambda: stream.acked == [other_partition, first, second], timeout_s=2, every_s=0.001)


@pytest.mark.parametrize("failure", ["the decision raises", "a delivery fails"])
async def test_a_failed_batch_is_never_passed_and_stops_the_worker(failure):
    stream, decide = FakeStream(), ControlledDecide()
    batches = NaturalBatches(stream, 10, decide)
    failing, later, other_partition = FakeEvent(0, 0), FakeEvent(0, 1), FakeEvent(1, 0)
    await batches.add(failing)
    await decide.nth_batch(0)
    await batches.add(later)
    await batches.add(other_partition)
    await decide.nth_batch(1)
    decide.outcomes[1].set_result([])
    await eventually(lambda: stream.acked == [other_partition], timeout_s=2, every_s=0.001)

    error = RuntimeError("redis said no")
    if failure == "the decision raises":
        decide.outcomes[0].set_exception(error)
    else:
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_exception(error)
        decide.outcomes[0].set_result([delivery])
    await eventually(lambda: stream.app.crashed_with == [error], timeout_s=2, every_s=0.001)
    assert stream.acked == [other_partition], "partition 0 stays unacknowledged from its failed lead on"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batches.add(FakeEvent(1, 1)), 0.05)
    assert len(decide.batches) == 2, "nothing more is taken in once a batch failed"


@pytest.mark.parametrize(("key", "value"), [(None, b"\xff\xfe{not json"), (b"\x00", b""), (None, None)])
async def test_faust_never_acknowledges_a_lead_record_by_itself(key, value):
    """faust acknowledges, out of turn, a record whose key or value it cannot decode: a lead's
    record must decode whatever it holds (raw bytes), leaving every acknowledgement to the batches."""
    message = Message(leads_topic.get_topic_name(), 0, 5, 0.0, 0, [], key, value, None)
    event = await leads_topic.decode(message, propagate=True)
    assert (event.key, event.value) == (key, value)


# The real worker on the real broker.

class BatchesWorkers:
    """tests/dispatcher/batches_worker.py processes sharing one topic, consumer group and notes
    file, one at a time, as a worker and its replacement after a crash."""

    def __init__(self, broker_url: str, prefix: str, workdir: Path) -> None:
        self.broker_url, self.workdir = broker_url, workdir
        self.topic, self.group = f"{prefix}leads", f"{prefix}batches"
        self.notes_path = workdir / "notes"
        self.notes_path.touch()
        self.process: asyncio.subprocess.Process | None = None
        self._producer: AIOKafkaProducer | None = None

    def notes(self) -> list[str]:
        return self.notes_path.read_text().splitlines()

    def decided(self) -> set[str]:
        return {note.removeprefix("decided ") for note in self.notes() if note.startswith("decided ")}

    async def start(self, *options: str) -> None:
        readies = self.notes().count("ready")
        with (self.workdir / "worker.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.dispatcher.batches_worker", "--broker", self.broker_url,
                "--topic", self.topic, "--group", self.group, "--port", str(free_port()),
                "--notes", str(self.notes_path), *options,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )
        await eventually(lambda: self.notes().count("ready") > readies or self.process.returncode is not None,
                         timeout_s=30)
        assert self.process.returncode is None, self.log_tail()

    async def kill(self) -> None:
        """SIGKILL: no clean leave, no last commit."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_tail(self) -> str:
        return "\n".join((self.workdir / "worker.log").read_text(errors="replace").splitlines()[-30:])

    async def produce(self, partition: int, *lead_ids: str) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap(self.broker_url), linger_ms=0)
            await self._producer.start()
        for lead_id in lead_ids:
            await self._producer.send(self.topic, lead_id.encode(), partition=partition)
        await self._producer.flush()

    async def committed(self, partition: int) -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(self.broker_url), group_id=self.group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(self.topic, partition))
        finally:
            await consumer.stop()

    async def close(self) -> None:
        await self.kill()
        if self._producer is not None:
            await self._producer.stop()


@pytest.fixture
async def batches_workers(stack, unique_prefix, tmp_path) -> Iterator[BatchesWorkers]:
    workers = BatchesWorkers(stack.broker_url, unique_prefix, tmp_path)
    yield workers
    await workers.close()


FAST = [f"fast-{n}" for n in range(5)]


async def open_a_hole(workers: BatchesWorkers, hole: str) -> int | None:
    """Partition 0 gets a lead whose batch never finishes, then leads decided at once behind it.
    Returns the hole's offset once a commit has covered partition 1's lead, which arrived after
    every fast lead of partition 0 was decided (acknowledged, as they finished, or not)."""
    if hole == "after a commit":
        await workers.produce(0, "warm-up")
        await eventually(lambda: "warm-up" in workers.decided())
        await eventually(lambda: _is(workers.committed(0), 1))
        hole_offset = 1
    else:
        hole_offset = 0
    await workers.produce(0, "slow")
    await eventually(lambda: "holding slow" in workers.notes())
    await workers.produce(0, *FAST)
    await eventually(lambda: set(FAST) <= workers.decided())
    await workers.produce(1, "other")
    await eventually(lambda: _is(workers.committed(1), 1))
    return hole_offset


async def _is(committed, expected: int) -> bool:
    return await committed == expected


# faust's two holes (#606): one offset wide after a commit, and any width before the first commit.
HOLES = ["after a commit", "on a fresh group"]


@pytest.mark.parametrize("hole", HOLES)
async def test_acked_as_batches_finish_faust_commits_past_the_slow_batch(batches_workers, hole):
    """Why the ordering exists: acknowledged as they finish, the fast leads behind the slow one
    are committed, and a crash now would never decide it."""
    await batches_workers.start("--acks", "as-completed", "--hold", "slow")
    hole_offset = await open_a_hole(batches_workers, hole)
    await eventually(lambda: _is(batches_workers.committed(0), hole_offset + 1 + len(FAST)), timeout_s=5)
    assert "slow" not in batches_workers.decided()


@pytest.mark.parametrize("hole", HOLES)
async def test_a_worker_killed_with_a_slow_batch_in_flight_leaves_no_lead_undecided(batches_workers, hole):
    await batches_workers.start("--hold", "slow")
    hole_offset = await open_a_hole(batches_workers, hole)
    committed_before_the_hole = hole_offset if hole == "after a commit" else None
    assert await batches_workers.committed(0) == committed_before_the_hole
    await batches_workers.kill()
    assert await batches_workers.committed(0) == committed_before_the_hole

    await batches_workers.start()
    await eventually(lambda: {"slow", *FAST} <= batches_workers.decided(), timeout_s=20)
    await eventually(lambda: _is(batches_workers.committed(0), hole_offset + 1 + len(FAST)), timeout_s=5)


async def test_a_failed_batch_stops_the_worker_and_the_next_one_decides_it_and_what_followed(batches_workers):
    """The failure is taken in on partition 0 while the next lead arrives on partition 1: an agent
    that only crashed would be restarted by faust and acknowledge what followed on both."""
    await batches_workers.start("--fail", "boom")
    await batches_workers.produce(0, "warm-up")
    await eventually(lambda: _is(batches_workers.committed(0), 1))
    await batches_workers.produce(0, "boom")
    await eventually(lambda: "failing boom" in batches_workers.notes())
    await batches_workers.produce(1, "next-on-1")
    await batches_workers.produce(0, "next-on-0")
    exit_code = await asyncio.wait_for(batches_workers.process.wait(), 15)
    assert exit_code != 0, batches_workers.log_tail()
    assert await batches_workers.committed(0) == 1
    assert await batches_workers.committed(1) is None

    await batches_workers.start()
    await eventually(lambda: {"boom", "next-on-0", "next-on-1"} <= batches_workers.decided(), timeout_s=20)


async def test_a_batch_waits_the_linger_from_its_first_lead_unless_it_is_full():
    stream, decide = FakeStream(), ControlledDecide()
    batches = NaturalBatches(stream, 3, decide, linger_s=0.2)
    loop = asyncio.get_running_loop()
    first, second = FakeEvent(0, 0), FakeEvent(1, 0)
    arrived = loop.time()
    await batches.add(first)
    await asyncio.sleep(0.05)
    await batches.add(second)
    assert await decide.nth_batch(0) == [first, second], "a lead that came within the linger joined the first"
    assert loop.time() - arrived >= 0.2, "decided no sooner than the linger after the first lead"
    decide.outcomes[0].set_result([])

    full = [FakeEvent(0, 1), FakeEvent(0, 2), FakeEvent(1, 1)]
    arrived = loop.time()
    for event in full:
        await batches.add(event)
    assert await decide.nth_batch(1) == full
    assert loop.time() - arrived < 0.2, "a full batch does not wait"
    decide.outcomes[1].set_result([])
    await eventually(lambda: len(stream.acked) == 5, timeout_s=2, every_s=0.001)
    batches._worker.cancel()
