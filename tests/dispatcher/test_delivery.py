"""Nothing lost, nothing assigned twice: several workers, and a worker killed mid-stream."""

from __future__ import annotations

import asyncio
import collections
import random
import urllib.request

import aiohttp
import orjson
import redis.asyncio as aioredis

from dispatcher.state.keys import Keys
from tests.kafka_io import eventually, produce_leads, read_topic

FAST_REJOIN = {
    "DISPATCHER_BROKER_SESSION_TIMEOUT_S": "3",
    "DISPATCHER_BROKER_REBALANCE_TIMEOUT_S": "3",
    "DISPATCHER_COMMIT_INTERVAL_S": "0.5",
}


async def put_roster(worker, reps: dict[str, int]) -> None:
    base = f"http://127.0.0.1:{worker.http_port}"
    async with aiohttp.ClientSession() as session:
        for rep_id, capacity in reps.items():
            async with session.put(f"{base}/v1/reps/{rep_id}", json={"capacity": capacity}) as response:
                assert response.status == 200, await response.text()
            async with session.post(f"{base}/v1/reps/{rep_id}/presence", json={"status": "online"}) as response:
                assert response.status == 200, await response.text()


async def workspace_hash(stack, worker, key: str) -> dict[str, str]:
    client = aioredis.from_url(stack.redis_url, decode_responses=True)
    try:
        return await client.hgetall(getattr(Keys(worker.env["DISPATCHER_WORKSPACE"]), key))
    finally:
        await client.aclose()


async def lead_records(stack, worker) -> dict[str, dict]:
    return {lead_id: orjson.loads(record) for lead_id, record in (await workspace_hash(stack, worker, "leads")).items()}


async def rep_loads(stack, worker) -> dict[str, int]:
    return {field.split("|")[0]: int(load) for field, load in (await workspace_hash(stack, worker, "rep_load")).items()}


def assert_one_rep_per_lead(events: list[dict]) -> dict[str, str]:
    reps_by_lead: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        reps_by_lead[event["lead_id"]].add(event["rep_id"])
    doubled = {lead: reps for lead, reps in reps_by_lead.items() if len(reps) > 1}
    assert not doubled, f"leads announced for more than one rep: {doubled}"
    return {lead: reps.pop() for lead, reps in reps_by_lead.items()}


async def test_two_workers_never_exceed_capacity(worker_factory, stack):
    first = worker_factory(**FAST_REJOIN)
    second = worker_factory(**FAST_REJOIN)
    reps = {f"rep{n}": random.Random(n).randint(1, 9) for n in range(20)}
    await put_roster(first, reps)
    total = sum(reps.values())
    leads = [{"id": f"lead-{n}", "priority": n % 10} for n in range(total + 150)]
    await produce_leads(stack.broker_url, first.env["DISPATCHER_TOPIC_PREFIX"] + "leads", leads)

    async def all_decided():
        records = await lead_records(stack, first)
        return len(records) == len(leads) and all(r["status"] in ("assigned", "queued") for r in records.values())

    await eventually(all_decided, timeout_s=60)
    records = await lead_records(stack, first)
    assigned = [r for r in records.values() if r["status"] == "assigned"]
    assert len(assigned) == total
    assert await rep_loads(stack, first) == reps
    events = await read_topic(stack.broker_url, first.env["DISPATCHER_TOPIC_PREFIX"] + "assignments",
                              until=lambda r: len({e["lead_id"] for e in r}) >= total)
    assert len(assert_one_rep_per_lead(events)) == total
    received = [await _received(worker) for worker in (first, second)]
    assert all(count > 0 for count in received), f"both workers consumed leads: {received}"


async def _received(worker) -> float:
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{worker.http_port}/metrics").read().decode()
    )
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
        if line.startswith('dispatcher_leads_received_total{source="kafka"}')
    )


async def test_a_worker_killed_mid_stream_loses_nothing_and_doubles_nothing(worker_factory, stack):
    worker = worker_factory(**FAST_REJOIN)
    reps = {f"rep{n}": 40 for n in range(20)}
    await put_roster(worker, reps)
    topic = worker.env["DISPATCHER_TOPIC_PREFIX"] + "leads"
    leads = [{"id": f"lead-{n}", "priority": n % 10} for n in range(600)]

    async def produce_steadily():
        for start in range(0, len(leads), 20):
            await produce_leads(stack.broker_url, topic, leads[start:start + 20])
            await asyncio.sleep(0.02)

    producing = asyncio.create_task(produce_steadily())
    await eventually(lambda: _count_records(stack, worker, at_least=150), timeout_s=30)
    worker.kill()
    decided_before_the_kill = len(await lead_records(stack, worker))
    assert decided_before_the_kill < len(leads), "the kill must land mid-stream"
    replacement = worker_factory(start=False, **FAST_REJOIN)
    await asyncio.to_thread(replacement.start)
    await producing

    async def all_assigned():
        records = await lead_records(stack, worker)
        return len(records) == len(leads) and all(r["status"] == "assigned" for r in records.values())

    await eventually(all_assigned, timeout_s=90)
    records = await lead_records(stack, worker)
    open_by_rep = collections.Counter(record["rep_id"] for record in records.values())
    assert await rep_loads(stack, worker) == {rep: open_by_rep.get(rep, 0) for rep in reps}
    events = await read_topic(stack.broker_url, worker.env["DISPATCHER_TOPIC_PREFIX"] + "assignments",
                              until=lambda r: len({e["lead_id"] for e in r}) >= len(leads), timeout_s=60)
    announced = assert_one_rep_per_lead(events)
    assert announced == {lead_id: record["rep_id"] for lead_id, record in records.items()}


async def _count_records(stack, worker, *, at_least: int) -> bool:
    return len(await lead_records(stack, worker)) >= at_least
