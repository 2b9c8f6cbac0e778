"""What a load test must prove, read from the system of record (Redis and the topics), never
from locust's own counters: nothing lost, nothing assigned twice, nobody over capacity."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from dispatcher.state.keys import Keys


@dataclass
class Audit:
    produced: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    doubled: dict[str, list[str]] = field(default_factory=dict)
    over_capacity: dict[str, tuple[int, int]] = field(default_factory=dict)
    load_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)
    peak_produced_per_s: float = 0.0
    peak_assigned_per_s: float = 0.0
    topic_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.over_capacity or self.load_mismatch)


class TopicTail:
    """Reads topics from their first record for as long as the load test runs, in a thread of its
    own, keeping (timestamp ms, value) of every record. Reading a long topic afterwards is no
    option on the embedded broker: a fetch costs more the more batches lie before it (NOTES.md),
    and 40,000 small batches took 30 s, 200,000 would take many minutes."""

    def __init__(self, bootstrap: str, topics: list[str], *, metadata_timeout_s: float = 30.0) -> None:
        self.bootstrap, self.topics, self.metadata_timeout_s = bootstrap, topics, metadata_timeout_s
        self.records: dict[str, list[tuple[int, bytes]]] = {topic: [] for topic in topics}
        self._finish_after_quiet_s: float | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="topic-tail", daemon=True)
        self._following = threading.Event()

    def start(self) -> TopicTail:
        self._thread.start()
        self._following.wait(self.metadata_timeout_s + 5)
        if self._failure:
            raise self._failure
        return self

    def finish(self, *, quiet_s: float = 3.0, timeout_s: float = 600.0) -> dict[str, list[tuple[int, bytes]]]:
        """Once no record has come for `quiet_s` (the writers have stopped), every record read."""
        self._finish_after_quiet_s = quiet_s
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the topics were still being written {timeout_s:.0f} s after the load stopped")
        if self._failure:
            raise self._failure
        return self.records

    def _run(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of start() or finish()
            self._failure = exc
            self._following.set()

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=5)
        await consumer.start()
        try:
            await self._subscribe_once_they_exist(consumer)
            self._following.set()
            last_record = time.monotonic()
            while self._finish_after_quiet_s is None or time.monotonic() - last_record < self._finish_after_quiet_s:
                for tp, messages in (await consumer.getmany(timeout_ms=200, max_records=10_000)).items():
                    self.records[tp.topic].extend((message.timestamp, message.value) for message in messages)
                    last_record = time.monotonic()
        finally:
            await consumer.stop()

    async def _subscribe_once_they_exist(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribes once the broker lists every topic, and returns once every topic's partitions
        are assigned: a subscription to a topic not there yet waits for the next metadata refresh,
        minutes away, and the workers declare the topics as they start."""
        deadline = time.monotonic() + self.metadata_timeout_s
        while not set(self.topics) <= await consumer.topics():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not list {self.topics} within {self.metadata_timeout_s:.0f} s")
            await asyncio.sleep(0.2)
        consumer.subscribe(self.topics)
        while {tp.topic for tp in consumer.assignment()} != set(self.topics):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {self.topics} were assigned within {self.metadata_timeout_s:.0f} s")
            await asyncio.sleep(0.1)


def peak_rate(timestamps_ms: list[int], window_s: float = 10.0) -> float:
    """The highest rate held over any window of `window_s` seconds."""
    ordered = sorted(timestamps_ms)
    best, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= window_s * 1000:
            start += 1
        best = max(best, end - start + 1)
    return best / window_s


async def wait_until_decided(redis_url: str, workspace: str, *, steady_s: float = 5.0,
                             deadline_s: float = 600.0) -> float:
    """Waits for the workers to work off what the load left behind: until the leads Redis holds
    and the assignments made have not moved for `steady_s` and no lead is still pending. Returns
    the seconds it took (how long the backlog took to clear)."""
    keys = Keys(workspace)
    client = aioredis.from_url(redis_url, decode_responses=True)
    started = time.monotonic()
    try:
        last, last_change = None, started
        while time.monotonic() - started < deadline_s:
            sample = (await client.hlen(keys.leads), await client.get(keys.assigned_count))
            if sample != last:
                last, last_change = sample, time.monotonic()
            elif time.monotonic() - last_change >= steady_s:
                # Only once things are still: reading every record is too heavy to repeat each second.
                if not any(orjson.loads(raw)["status"] == "pending" for raw in await client.hvals(keys.leads)):
                    break
                last_change = time.monotonic()
            await asyncio.sleep(1.0)
    finally:
        await client.aclose()
    return time.monotonic() - started


async def audit(records: dict[str, list[tuple[int, bytes]]], redis_url: str, workspace: str, topic_prefix: str) -> Audit:
    """`records`: what a TopicTail read from the `leads` and `assignments` topics."""
    result = Audit()
    lead_records = records[topic_prefix + "leads"]
    events = [orjson.loads(value) for _, value in records[topic_prefix + "assignments"]]
    result.topic_lengths = {"leads": len(lead_records), "assignments": len(events)}
    result.peak_produced_per_s = peak_rate([timestamp for timestamp, _ in lead_records])
    produced_ids = set()
    for _, value in lead_records:
        try:
            produced_ids.add(orjson.loads(value)["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    result.produced = len(produced_ids)

    keys = Keys(workspace)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        records = {lead_id: orjson.loads(raw) for lead_id, raw in (await client.hgetall(keys.leads)).items()}
        loads = await client.hgetall(keys.rep_load)
        capacities = await client.hgetall(keys.rep_capacity)
        open_members = await client.zrange(keys.open_leads, 0, -1)
    finally:
        await client.aclose()

    result.by_status = dict(collections.Counter(record["status"] for record in records.values()))
    decided = {"assigned", "queued", "closed", "pooled"}
    # A lead Redis holds but never decided (accepted over HTTP, then not consumed) is as lost as one
    # the topic holds and Redis does not: both count, so a topic that could not be read hides nothing.
    result.lost = sorted(i for i in produced_ids | set(records) if i not in records or records[i]["status"] not in decided)
    reps_by_lead: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        if not event.get("reassigned"):
            reps_by_lead[event["lead_id"]].add(event["rep_id"])
    result.doubled = {lead: sorted(reps) for lead, reps in reps_by_lead.items() if len(reps) > 1}
    for bucket, capacity in capacities.items():
        load = int(loads.get(bucket, 0))
        if load > int(capacity):
            result.over_capacity[bucket] = (load, int(capacity))
    open_by_rep = collections.Counter(member.split("|", 1)[0] for member in open_members)
    load_by_rep: collections.Counter[str] = collections.Counter()
    for bucket, load in loads.items():
        load_by_rep[bucket.split("|", 1)[0]] += int(load)
    for rep in set(open_by_rep) | set(load_by_rep):
        if open_by_rep[rep] != load_by_rep[rep]:
            result.load_mismatch[rep] = (load_by_rep[rep], open_by_rep[rep])
    result.peak_assigned_per_s = peak_rate([r["assigned_at"] for r in records.values() if r.get("assigned_at")])
    return result
