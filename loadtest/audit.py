"""What a load test must prove, read from the system of record (Redis and the topics), never
from locust's own counters: nothing lost, nothing assigned twice, nobody over capacity."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from dispatcher.state.keys import Keys
from loadtest.bench import percentile
from loadtest.broker import READ_FETCH_BYTES, READ_FETCH_WAIT_MS


@dataclass
class Audit:
    produced: int = 0
    assigned: int = 0  # leads with at least one assignment event
    by_status: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    doubled: dict[str, list[str]] = field(default_factory=dict)
    over_capacity: dict[str, tuple[int, int]] = field(default_factory=dict)
    load_mismatch: dict[str, tuple[int, int]] = field(default_factory=dict)
    peak_produced_per_s: float = 0.0
    peak_assigned_per_s: float = 0.0
    # Lead record -> its first assignment event, each by the timestamp its producer gave it: the
    # system's own delay, whatever any reader of the topics (locust's, this one) adds.
    latency_ms: dict[str, float] = field(default_factory=dict)
    last_assigned_ms: int = 0
    topic_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.over_capacity or self.load_mismatch)


async def read_topics(bootstrap: str, topics: list[str], *, quiet_s: float = 3.0,
                      timeout_s: float = 600.0) -> dict[str, list[tuple[int, bytes]]]:
    """(producer timestamp ms, value) of every record of `topics`, from the first, read until no
    record has come for `quiet_s`: the writers have stopped, or fall further behind than that."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=READ_FETCH_WAIT_MS,
                                max_partition_fetch_bytes=READ_FETCH_BYTES, fetch_max_bytes=READ_FETCH_BYTES)
    records: dict[str, list[tuple[int, bytes]]] = {topic: [] for topic in topics}
    await consumer.start()
    try:
        started = last_record = time.monotonic()
        while time.monotonic() - last_record < quiet_s:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{topics} were still being written {timeout_s:.0f} s after reading began")
            for tp, messages in (await consumer.getmany(timeout_ms=200, max_records=50_000)).items():
                records[tp.topic].extend((message.timestamp, message.value) for message in messages)
                last_record = time.monotonic()
    finally:
        await consumer.stop()
    return records


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


def audit_topics(records: dict[str, list[tuple[int, bytes]]], topic_prefix: str) -> Audit:
    """What the `leads` and `assignments` topics alone show (records as read_topics returns them).
    Any system that answers each lead with `{"lead_id": ...}` can be audited so, the bare relays
    included; a lead without an event counts as lost here."""
    result = Audit()
    produced_at: dict[str, int] = {}
    for timestamp, value in records[topic_prefix + "leads"]:
        try:
            produced_at.setdefault(orjson.loads(value)["id"], timestamp)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    first_event_at: dict[str, int] = {}
    reps_by_lead: dict[str, set[str]] = collections.defaultdict(set)
    for timestamp, value in records[topic_prefix + "assignments"]:
        event = orjson.loads(value)
        first_event_at.setdefault(event["lead_id"], timestamp)
        if "rep_id" in event and not event.get("reassigned"):
            reps_by_lead[event["lead_id"]].add(event["rep_id"])
    result.topic_lengths = {"leads": len(records[topic_prefix + "leads"]),
                            "assignments": len(records[topic_prefix + "assignments"])}
    result.produced, result.assigned = len(produced_at), len(first_event_at)
    result.peak_produced_per_s = peak_rate(list(produced_at.values()))
    result.peak_assigned_per_s = peak_rate(list(first_event_at.values()))
    result.last_assigned_ms = max(first_event_at.values(), default=0)
    result.lost = sorted(produced_at.keys() - first_event_at.keys())
    result.doubled = {lead: sorted(reps) for lead, reps in reps_by_lead.items() if len(reps) > 1}
    delays = sorted(first_event_at[lead] - at for lead, at in produced_at.items() if lead in first_event_at)
    if delays:
        result.latency_ms = {name: float(percentile(delays, share))
                             for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))}
    return result


async def audit_redis(result: Audit, redis_url: str, workspace: str) -> Audit:
    """The dispatcher's own books on top of the topics': a lead it queued or pooled for want of a
    rep was decided, not lost, and nobody's load may pass their capacity or differ from their
    open leads."""
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
    # Queued or pooled leads were decided without a rep, so they have no event yet; any other lead
    # without one is lost, and so is one Redis holds but never decided (accepted over HTTP, then
    # never consumed): both count, so a topic that could not be read hides nothing.
    waiting = {"queued", "pooled"}
    never_decided = {lead for lead, record in records.items() if record["status"] not in waiting | {"assigned", "closed"}}
    without_event = {lead for lead in result.lost if records.get(lead, {}).get("status") not in waiting}
    result.lost = sorted(never_decided | without_event)
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
    return result
