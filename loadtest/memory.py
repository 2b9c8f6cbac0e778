"""What a lead costs in Redis memory: open (assigned, waiting), closed, and what expiry gives back.

Lead records live in Redis while a lead is open and for a retention after it closes
(DISPATCHER_CLOSED_LEAD_RETENTION_S, 7 days by default; expire_closed.lua forgets them, their
history having gone to the lead-events topic when they closed). This bench measures what that
costs, against a redis-server of its own, through the same Store calls the worker makes:

  roster      1,000 reps online, each with room for 20 leads and every skill a lead asks for
  assigned    20,000 leads decided in batches of 200: every one assigned, every rep full
  closed      each rep closes its leads (store.close, actor "rep:<id>"); nothing waits, so nothing
              is handed on
  assigned beside closed
              20,000 more leads, assigned again, beside the 20,000 closed
  queued      20,000 more leads; no rep has room, so every one waits
  expired     store.expire_closed with a retention of 0 until it forgets no more

Each step's cost is the change in INFO memory's used_memory over the leads the step touched,
read with only the measuring connection open (the pool's connections hold buffers as large as
their last pipeline, which are not data). MEMORY USAGE (every sample) of the workspace's keys
shows where the bytes go. "per closed lead" is what a closed lead holds against none at all: the
assigned and closed steps together.

Every state change but a lead's own decision (which its worker announces itself) also writes its
events into the outbox stream in the same script; the workers' relay deletes them once Kafka has them. Nobody relays here, so after each step the bench reads the
outbox's size and then empties it (XTRIM MAXLEN 0): the per-lead figures hold no outbox, and the
outbox is given per event (what a backlog costs while Kafka is away).

Leads are shaped like real ones (see realistic_lead): a UUID id, a channel, a priority, a customer
id, a value, one or two skills and six attributes (region, industry, product, grade, source,
language), validated as the worker does before it stores them.

    python -m loadtest.memory
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from dispatcher.embedded import EmbeddedStack
from dispatcher.models import routable_lead
from dispatcher.settings import Settings
from dispatcher.state.layout import connect
from dispatcher.state.store import Store
from loadtest.decision_cost import (
    MeasurementError,
    decide,
    drop_workspace,
    expect,
    load_scripts,
    machine,
    new_store,
    put_reps,
)
from loadtest.reporting import report

POOL_SIZE = 8
SETTLE_TIMEOUT_S = 5.0
CLOSE_CHUNK = 200
EXPIRE_BATCH = 1000
LANGUAGES = ("english", "spanish", "german")
PRODUCTS = ("payroll", "crm", "analytics", "billing")
REGIONS = ("na-east", "na-west", "emea-north", "emea-south", "latam", "apac")
INDUSTRIES = ("software", "retail", "healthcare", "manufacturing", "finance", "logistics", "education")
SOURCES = ("web-form", "paid-search", "partner-referral", "webinar", "trade-show", "outbound")
CHANNELS = ("web", "chat", "call", "email")
# A deal's value in each grade's band (currency units); the grade is drawn first.
VALUE_BY_GRADE = {"A": (20_000.0, 250_000.0), "B": (3_000.0, 20_000.0), "C": (50.0, 3_000.0)}
# Every rep may take every lead, so leads wait only when every rep is full.
REP_SKILLS = {skill: 7 for skill in (*LANGUAGES, *PRODUCTS)}


@dataclass(frozen=True)
class Plan:
    reps: int = 1_000
    leads_per_rep: int = 20
    batch: int = 200
    seed: int = 9
    # What the retention figure is worked out for.
    retention_days: float = 7.0
    leads_per_day: int = 100_000

    @property
    def leads(self) -> int:
        """Leads of each kind (assigned, closed, queued): as many as the roster has room for."""
        return self.reps * self.leads_per_rep


FULL = Plan()


def realistic_lead(rng: random.Random) -> dict[str, Any]:
    """A lead as a producer sends it; values are drawn so sizes vary as real ones do."""
    grade = rng.choices(tuple(VALUE_BY_GRADE), weights=(5, 25, 70))[0]
    product = rng.choice(PRODUCTS)
    language = rng.choices(LANGUAGES, weights=(80, 12, 8))[0]
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "channel": rng.choice(CHANNELS),
        "priority": rng.choices(range(10), weights=(40, 25, 15, 8, 4, 3, 2, 1, 1, 1))[0],
        "customer_id": f"cust-{rng.getrandbits(40):010x}",
        "value": round(rng.uniform(*VALUE_BY_GRADE[grade]), 2),
        "skills": [language, product] if rng.random() < 0.5 else [language],
        "attributes": {
            "region": rng.choice(REGIONS),
            "industry": rng.choice(INDUSTRIES),
            "product": product,
            "grade": grade,
            "source": rng.choice(SOURCES),
            "language": language,
        },
    }


def make_leads(rng: random.Random, store: Store, count: int) -> list[dict[str, Any]]:
    """Leads as the worker stores them: validated, defaults filled in."""
    max_bytes = Settings().max_body_bytes
    return [routable_lead(orjson.dumps(realistic_lead(rng)), store.routing, max_bytes=max_bytes) for _ in range(count)]


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    used_memory: int
    """INFO memory used_memory, with only the measuring connection open."""
    keys: dict[str, int]
    """MEMORY USAGE of the workspace's keys, summed by what they hold (key_group)."""


def key_group(store: Store, key: str) -> str:
    k = store.keys
    named = {k.leads: "lead records", k.open_leads: "open set", k.closed_leads: "closed set", k.outbox: "outbox"}
    if key in named:
        return named[key]
    for queue in store.routing.queues:
        for channel in store.routing.channels:
            if key == k.queue_wait(queue.name, channel):
                return "wait sets"
            if key == k.queue_wait_index(queue.name, channel):
                return "wait indexes"
    return "the rest"


GROUPS = ("lead records", "open set", "wait sets", "wait indexes", "closed set", "the rest")


async def alone(client: aioredis.Redis) -> None:
    """Drops the pool's connections and waits until Redis has freed them: each holds buffers as
    large as the last pipeline it carried, which would otherwise count as data."""
    await client.connection_pool.disconnect()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (await client.info("clients"))["connected_clients"] > 1:
        if time.monotonic() > deadline:
            raise MeasurementError("other clients stay connected to the bench's redis; its memory is not the bench's")
        await asyncio.sleep(0.01)


async def snapshot(store: Store) -> Snapshot:
    client = store.client
    await alone(client)
    memory = await client.info("memory")
    keys = [key async for key in client.scan_iter(match=f"*{{{store.keys.workspace}}}*", count=1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    groups = dict.fromkeys((*GROUPS, "outbox"), 0)
    for key, used in zip(keys, await pipe.execute(), strict=True):
        groups[key_group(store, key)] += used or 0
    return Snapshot(memory["used_memory"], groups)


@dataclass(frozen=True)
class Step:
    name: str
    leads: int
    used_after: int
    used_change: int
    key_changes: dict[str, int]
    outbox_events: int
    outbox_bytes: int
    """used_memory the outbox's events held, given back when they were trimmed."""

    @property
    def bytes_per_lead(self) -> float:
        return self.used_change / self.leads

    @property
    def bytes_per_event(self) -> float | None:
        return self.outbox_bytes / self.outbox_events if self.outbox_events else None


async def measured_step(store: Store, before: Snapshot, name: str, leads: int,
                        work: Callable[[], Awaitable[None]]) -> tuple[Step, Snapshot]:
    """Runs `work`, then reads and empties the outbox it filled; the step and the snapshot after."""
    await work()
    with_outbox = await snapshot(store)
    events = await empty_outbox(store)
    after = await snapshot(store)
    step = Step(name, leads, after.used_memory, after.used_memory - before.used_memory,
                {group: after.keys[group] - before.keys[group] for group in GROUPS}, events,
                with_outbox.used_memory - after.used_memory)
    return step, after


async def empty_outbox(store: Store) -> int:
    """What the relay would have done: the events gone once sent. Returns how many there were."""
    events = await store.client.xlen(store.keys.outbox)
    await store.client.xtrim(store.keys.outbox, maxlen=0, approximate=False)
    return events


async def mean_record_bytes(store: Store, leads: Sequence[dict[str, Any]]) -> float:
    pipe = store.client.pipeline(transaction=False)
    for lead in leads:
        pipe.hstrlen(store.keys.leads, lead["id"])
    sizes = await pipe.execute()
    if not all(sizes):
        raise MeasurementError("a lead the bench decided has no record")
    return sum(sizes) / len(sizes)


async def close_all(store: Store, leads: Sequence[dict[str, Any]]) -> None:
    """Each rep closes its own leads; with nothing waiting, a close hands nothing on."""
    for first in range(0, len(leads), CLOSE_CHUNK):
        chunk = leads[first:first + CLOSE_CHUNK]
        records = await asyncio.gather(*(store.lead(lead["id"]) for lead in chunk))
        outcomes = await asyncio.gather(*(store.close(record["id"], "won", actor=f"rep:{record['rep_id']}")
                                          for record in records))
        wrong = [o for o in outcomes if not o.ok or o.detail != "closed (was assigned)" or o.assignments]
        if wrong:
            raise MeasurementError(f"{len(wrong)} closes did not close an assigned lead alone (first: {wrong[0]})")


async def expire_all(store: Store, expected: int) -> None:
    forgotten = 0
    while count := await store.expire_closed(0, EXPIRE_BATCH):
        forgotten += count
    if forgotten != expected:
        raise MeasurementError(f"expire_closed forgot {forgotten} leads, not {expected}")


async def expect_counts(store: Store, records: int, closed: int) -> None:
    found = await store.client.hlen(store.keys.leads), await store.client.zcard(store.keys.closed_leads)
    if found != (records, closed):
        raise MeasurementError(f"{found[0]} lead records and {found[1]} closed, not {records} and {closed}")


async def expect_waiting_everywhere(store: Store, count: int) -> None:
    pipe = store.client.pipeline(transaction=False)
    for channel in store.routing.channels:
        pipe.zcard(store.keys.queue_wait(store.routing.default_queue, channel))
    waiting = sum(await pipe.execute())
    if waiting != count:
        raise MeasurementError(f"{waiting} leads waiting, not {count}")


async def measure(store: Store, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(plan.seed)
    n = plan.leads
    # Loads expire_closed's script now, so the script cache does not grow inside the expiry step.
    await store.expire_closed(0, EXPIRE_BATCH)
    await put_reps(store, plan.reps, plan.leads_per_rep, REP_SKILLS)
    await empty_outbox(store)
    roster = await snapshot(store)
    steps: list[Step] = []
    records: dict[str, float] = {}

    async def assign(leads: list[dict[str, Any]]) -> None:
        expect(await decide(store, leads, plan.batch), "assigned", len(leads))

    async def queue(leads: list[dict[str, Any]]) -> None:
        expect(await decide(store, leads, plan.batch), "queued", len(leads))
        await expect_waiting_everywhere(store, len(leads))

    first, second, waiting = (make_leads(rng, store, n) for _ in range(3))
    bodies = [len(orjson.dumps(lead)) for lead in (*first, *second, *waiting)]
    before = roster
    for name, leads, work in (
        ("assigned", first, lambda: assign(first)),
        ("closed", first, lambda: close_all(store, first)),
        ("assigned beside closed", second, lambda: assign(second)),
        ("queued", waiting, lambda: queue(waiting)),
        ("expired", first, lambda: expire_all(store, n)),
    ):
        step, before = await measured_step(store, before, name, n, work)
        steps.append(step)
        if name != "expired":
            records[name] = await mean_record_bytes(store, leads)
        log(f"  {name:<24} {step.bytes_per_lead:8,.0f} bytes per lead, used_memory {step.used_after / 2**20:7.1f} MiB")
    await expect_counts(store, 2 * n, 0)

    by_name = {step.name: step for step in steps}
    closed_bytes = (by_name["assigned"].used_change + by_name["closed"].used_change) / n
    retained = plan.retention_days * plan.leads_per_day
    return {
        "lead_json_bytes": sum(bodies) / len(bodies),
        "record_bytes": records,
        "roster_used_memory": roster.used_memory,
        "steps": [{**asdict(step), "bytes_per_lead": step.bytes_per_lead, "bytes_per_event": step.bytes_per_event}
                  for step in steps],
        "per_lead": {
            "assigned": by_name["assigned"].bytes_per_lead,
            "assigned beside closed": by_name["assigned beside closed"].bytes_per_lead,
            "queued": by_name["queued"].bytes_per_lead,
            "closed": closed_bytes,
            "given back by expiry": -by_name["expired"].bytes_per_lead,
        },
        "per_event": {"close (2 events)": by_name["closed"].bytes_per_event},
        "retention": {"days": plan.retention_days, "leads_per_day": plan.leads_per_day,
                      "closed_leads_held": retained, "bytes": retained * closed_bytes},
    }


async def run(plan: Plan, redis_url: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The memory phase against the redis at `redis_url`; the summary."""
    client = connect(redis_url, POOL_SIZE)
    began = time.perf_counter()
    try:
        allocator = (await client.info("memory"))["mem_allocator"]
        facts = {"when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                 "machine": {**await machine(client), "allocator": allocator}}
        await load_scripts(client)
        store = new_store(client, "leads", bench="memory")
        try:
            figures = await measure(store, plan, log)
        finally:
            await drop_workspace(store)
    finally:
        await client.aclose()
    return {**facts, "plan": asdict(plan), **figures, "seconds": round(time.perf_counter() - began, 1)}


# --- the report ---------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def table(summary: dict[str, Any]) -> str:
    m, plan = summary["machine"], summary["plan"]
    n = plan["reps"] * plan["leads_per_rep"]
    records = summary["record_bytes"]
    lines = [
        f"memory per lead in Redis, {summary['when']}: redis {m['redis']} ({m['allocator']}), python {m['python']}",
        f"{plan['reps']:,} reps with room for {plan['leads_per_rep']} leads each; {n:,} leads per step",
        f"lead bodies {summary['lead_json_bytes']:.0f} bytes of JSON on average; lead records (the leads hash's "
        f"values) {records['assigned']:.0f} bytes assigned, {records['closed']:.0f} closed, "
        f"{records['queued']:.0f} queued",
        "",
        f"{'step':<24}{'leads':>8}{'used_memory':>14}{'change':>13}{'bytes/lead':>12}{'outbox events':>15}"
        f"{'bytes/event':>13}",
    ]
    lines.append("-" * len(lines[-1]))
    lines.append(f"{'roster in place':<24}{'':>8}{_mib(summary['roster_used_memory']):>14}")
    for step in summary["steps"]:
        per_event = f"{step['bytes_per_event']:,.0f}" if step["bytes_per_event"] else "-"
        lines.append(f"{step['name']:<24}{step['leads']:>8,}{_mib(step['used_after']):>14}"
                     f"{step['used_change'] / 2**20:>+9.1f} MiB{step['bytes_per_lead']:>+12,.0f}"
                     f"{step['outbox_events']:>15,}{per_event:>13}")
    widths = [max(10, len(step["name"]) + 2) for step in summary["steps"]]

    def per_lead_row(label: str, figure: Callable[[dict[str, Any]], float]) -> str:
        return f"{label:<24}" + "".join(f"{figure(step) / step['leads']:>+{width},.0f}"
                                        for step, width in zip(summary["steps"], widths, strict=True))

    lines += ["", "where the bytes go: MEMORY USAGE of the workspace's keys, change per lead of each step", "",
              f"{'key':<24}" + "".join(f"{step['name']:>{width}}"
                                       for step, width in zip(summary["steps"], widths, strict=True))]
    lines.append("-" * len(lines[-1]))
    lines += [per_lead_row(group, lambda step, group=group: step["key_changes"][group]) for group in GROUPS]
    lines.append(per_lead_row("sum of the keys", lambda step: sum(step["key_changes"].values())))
    lines.append(per_lead_row("used_memory", lambda step: step["used_change"]))
    per_lead, per_event, retention = summary["per_lead"], summary["per_event"], summary["retention"]
    lines += [
        "",
        f"  per open assigned lead          {per_lead['assigned']:>7,.0f} bytes   "
        f"({per_lead['assigned beside closed']:,.0f} beside {n:,} closed)",
        f"  per queued lead                 {per_lead['queued']:>7,.0f} bytes",
        f"  per closed lead                 {per_lead['closed']:>7,.0f} bytes   (assigned, then closed: both steps)",
        f"  given back per expired lead     {per_lead['given back by expiry']:>7,.0f} bytes",
        f"  per outbox event                {per_event['close (2 events)']:>7,.0f} bytes, a close's "
        "(rep-events, and lead-events with the record); a decision writes none",
        f"  {retention['days']:g} days' retention at {retention['leads_per_day']:,} leads a day: "
        f"{retention['closed_leads_held']:,.0f} closed leads, {_mib(retention['bytes'])}",
        "",
        "  used_memory is read with only the measuring connection open; bytes/lead also moves with the",
        "  roster's indexes (a full rep leaves the ready index) and with the leads hash's table, which",
        "  doubles as it grows.",
        "  outbox events are emptied after each step (nobody relays here) and given per event.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    with EmbeddedStack(Path(tempfile.mkdtemp(prefix="memory-")), with_broker=False) as stack:
        summary = asyncio.run(run(FULL, stack.redis_url))
    report("memory", summary, table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
