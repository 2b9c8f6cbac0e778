"""What one decision costs in Redis, and whether that cost stays flat as the queue grows.

Every decision is one Lua script (dispatcher/state/lua). The issue's targets are about that step
alone, without Kafka or the worker around it, so this bench drives the Store straight against a
redis-server of its own:

  reps in the queue   10, 1,000 and 10,000 reps online in the one default queue, every rep with
                      room for every lead, so each decision is a pick from the ready index;
                      20,000 leads decided in batches of 200 (store.assign_many)
  new lead waits      0, 1,000 and 100,000 leads already waiting and no rep with room; 2,000 more
                      leads decided, each of which has to join the wait set
  drain               0, 1,000 and 100,000 leads left waiting after 2,000 drains: one rep with room
                      for one lead closes its lead (store.close) 2,000 times, and each close hands it
                      the best waiting lead (close.lua, lib.lua's drain_rep); the leads it drains
                      wait on top of those left, so the wait set shrinks from N + 2,001 to N
  batching on / off   the same 10,000 leads to 100 reps with room, in batches of 200 vs one
                      store.assign per lead awaited one after another (a round trip each)

Every case is measured in 3 rounds (all cases, then all again), and reports the median of each of
two figures, so a burst of other work on the machine moves one sample rather than the verdict:

  redis µs/lead   Redis's own time in the scripts (INFO commandstats, cmdstat_evalsha, after CONFIG
                  RESETSTAT) over the leads: what the decision costs the one thread every worker
                  shares. A batch's leads go LEADS_PER_SCRIPT to a script (store.assign_many),
                  one by one a script each, drains one close a script.
  wall µs/lead    the time of the Store calls over the leads, as Python sees it: the script, the
                  round trips, building and reading the pipeline; leads/s is its inverse.

The flatness targets (max/min <= 1.5x) apply to both. Every round of a case runs in a fresh workspace
(dropped afterwards) and checks what it did from the answers: every lead assigned or queued as
meant, the wait set as long as it should be, the drained leads handed over oldest first, and
exactly as many successful scripts in the stats as the leads take; any mismatch stops the run rather than print a
figure that measured something else.

    python -m loadtest.decision_cost [--quick]

--quick decides 5,000 leads per reps case (not 20,000), 500 per waiting case (not 2,000), 2,000 for
batching (not 10,000), and lets 10,000 waiting leads stand in for 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from dispatcher.embedded import EmbeddedStack
from dispatcher.routing import load_routing
from dispatcher.state.keys import Keys
from dispatcher.state.layout import connect
from dispatcher.state.results import Assignment, Decision, Outcome
from dispatcher.state.store import Store
from dispatcher.state.writes import LEADS_PER_SCRIPT
from loadtest.reporting import report

CHANNEL = "web"
# Long enough that no rep's presence lapses during a case: the bench sends no heartbeats.
PRESENCE_TTL_S = 3600.0
POOL_SIZE = 50
# Reps are put in place this many at a time, concurrently: setting up 10,000 one by one is slow.
REP_SETUP_CHUNK = 200
TARGET = 1.5

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    reps: tuple[int, ...] = (10, 1_000, 10_000)
    leads: int = 20_000
    waiting: tuple[int, ...] = (0, 1_000, 100_000)
    queued_leads: int = 2_000
    drained_leads: int = 2_000
    batching_leads: int = 10_000
    batching_reps: int = 100
    batch: int = 200
    # Filling the wait set is set-up, not measured: larger batches make 100,000 quick to queue.
    fill_batch: int = 2_000
    rounds: int = 3


FULL = Plan()
QUICK = Plan(leads=5_000, waiting=(0, 1_000, 10_000), queued_leads=500, drained_leads=500, batching_leads=2_000)


@dataclass(frozen=True)
class Row:
    """One case: µs per lead, Redis-side and wall, from each round it was measured in."""

    figure: str
    case: str
    leads: int
    redis_samples: tuple[float, ...]
    wall_samples: tuple[float, ...]

    @classmethod
    def measured(cls, figure: str, case: str, leads: int, wall_s: float, redis_us: float) -> Row:
        return cls(figure, case, leads, (redis_us,), (wall_s * 1e6 / leads,))

    @classmethod
    def of_rounds(cls, rounds: Sequence[Row]) -> Row:
        first = rounds[0]
        return cls(first.figure, first.case, first.leads, tuple(r for row in rounds for r in row.redis_samples),
                   tuple(w for row in rounds for w in row.wall_samples))

    @property
    def redis_us(self) -> float:
        return statistics.median(self.redis_samples)

    @property
    def wall_us(self) -> float:
        return statistics.median(self.wall_samples)

    @property
    def leads_per_s(self) -> float:
        return 1e6 / self.wall_us

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "redis_us": self.redis_us, "wall_us": self.wall_us, "leads_per_s": self.leads_per_s}


class MeasurementError(RuntimeError):
    """A case did not do what it was meant to, so its figure would describe something else."""


# --- set-up ------------------------------------------------------------------------------------


def new_store(client: aioredis.Redis, name: str, bench: str = "decision-cost") -> Store:
    return Store(client, Keys(f"{bench}-{name}-{uuid.uuid4().hex[:8]}"), load_routing(None), PRESENCE_TTL_S)


async def drop_workspace(store: Store) -> None:
    """Deletes every key of the store's workspace, so no case runs beside another's data (and the
    tests' shared redis is left as it was). keys.py puts the workspace's hash tag in every key."""
    keys = [key async for key in store.client.scan_iter(match=f"*{{{store.keys.workspace}}}*", count=1000)]
    if keys:
        await store.client.unlink(*keys)


def make_leads(tag: str, count: int) -> list[dict[str, Any]]:
    # Zero-padded ids: leads accepted in the same millisecond wait in id order, which is then also
    # the order they were sent in, so a drain's order can be checked exactly.
    return [{"id": f"{tag}-{n:07d}", "channel": CHANNEL, "priority": 0} for n in range(count)]


async def put_rep(store: Store, rep_id: str, capacity: int, skills: Mapping[str, int] | None = None) -> Outcome:
    """A rep online with room for `capacity` leads; the outcome of its coming online says which
    waiting leads it took."""
    profile = {"capacity": capacity, "skills": dict(skills or {}), "attributes": {}, "teams": []}
    outcome = await store.upsert_rep(rep_id, profile)
    if not outcome.ok:
        raise MeasurementError(f"rep {rep_id} was refused: {outcome.detail}")
    return await store.set_presence(rep_id, "online")


async def put_reps(store: Store, count: int, capacity: int, skills: Mapping[str, int] | None = None) -> None:
    """`count` reps online with room, every one of them in the queue's ready index."""
    for first in range(0, count, REP_SETUP_CHUNK):
        chunk = range(first, min(first + REP_SETUP_CHUNK, count))
        await asyncio.gather(*(put_rep(store, f"rep-{n:05d}", capacity, skills) for n in chunk))
    ready = await store.client.zcard(store.keys.queue_ready(store.routing.default_queue, "*"))
    if ready != count:
        raise MeasurementError(f"{ready} reps in the ready index, not {count}")


async def fill_wait_set(store: Store, leads: list[dict[str, Any]], batch: int) -> None:
    """Queues the leads; the caller has put no rep with room in place, so every one waits."""
    expect(await decide(store, leads, batch), "queued", len(leads))
    await expect_waiting(store, len(leads))


# --- deciding and checking ----------------------------------------------------------------------


async def decide(store: Store, leads: Sequence[dict[str, Any]], batch: int) -> list[Decision]:
    decisions: list[Decision] = []
    for first in range(0, len(leads), batch):
        decisions += await store.assign_many([(lead, source(lead)) for lead in leads[first:first + batch]])
    return decisions


async def decide_one_by_one(store: Store, leads: Sequence[dict[str, Any]]) -> list[Decision]:
    return [await store.assign(lead, source(lead)) for lead in leads]


def source(lead: dict[str, Any]) -> str:
    return f"decision-cost/{lead['id']}"


def expect(decisions: Sequence[Decision], status: str, count: int) -> None:
    wrong = [d for d in decisions if d.kind != "new" or d.status != status]
    if len(decisions) != count or wrong:
        raise MeasurementError(f"expected {count} new decisions '{status}', got {len(decisions)}, "
                               f"{len(wrong)} of them otherwise (first: {wrong[:1]})")


async def expect_waiting(store: Store, count: int) -> None:
    waiting = await store.client.zcard(store.keys.queue_wait(store.routing.default_queue, CHANNEL))
    if waiting != count:
        raise MeasurementError(f"{waiting} leads waiting, not {count}")


def scripts_deciding(leads: int, batch: int) -> int:
    """How many scripts store.assign_many runs for `leads` leads given it `batch` at a time."""
    full, rest = divmod(leads, batch)
    return full * math.ceil(batch / LEADS_PER_SCRIPT) + math.ceil(rest / LEADS_PER_SCRIPT)


async def timed_scripts(
    client: aioredis.Redis, scripts: int, leads: int, work: Callable[[], Awaitable[T]]
) -> tuple[T, float, float]:
    """Runs `work` with Redis's command stats reset: its result, its wall seconds, and Redis's µs
    per lead. Any count of scripts but `scripts`, or any failed one (a NOSCRIPT retry, another
    client's scripts), would mean Redis's time is not these leads' alone, so it stops the run."""
    await client.config_resetstat()
    began = time.perf_counter()
    result = await work()
    wall_s = time.perf_counter() - began
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    if stats.get("calls") != scripts or stats.get("failed_calls") or stats.get("rejected_calls"):
        raise MeasurementError(f"expected {scripts} successful scripts, Redis counted {stats}")
    return result, wall_s, stats["usec"] / leads


# --- the cases ----------------------------------------------------------------------------------


async def reps_in_queue(client: aioredis.Redis, plan: Plan, reps: int) -> Row:
    store = new_store(client, f"reps{reps}")
    try:
        # Every rep can hold every lead: none waits, whatever the strategy's spread.
        await put_reps(store, reps, capacity=plan.leads)
        leads = make_leads("lead", plan.leads)
        decisions, wall_s, redis_us = await timed_scripts(client, scripts_deciding(len(leads), plan.batch), len(leads),
                                                            lambda: decide(store, leads, plan.batch))
        expect(decisions, "assigned", len(leads))
        assigned = await store.assigned_count()
        if assigned != len(leads):
            raise MeasurementError(f"Redis counted {assigned} assignments, not {len(leads)}")
        return Row.measured("reps in the queue", f"{reps:,} reps", len(leads), wall_s, redis_us)
    finally:
        await drop_workspace(store)


async def new_lead_waits(client: aioredis.Redis, plan: Plan, waiting: int) -> Row:
    store = new_store(client, f"queue{waiting}")
    try:
        await fill_wait_set(store, make_leads("old", waiting), plan.fill_batch)
        leads = make_leads("new", plan.queued_leads)
        decisions, wall_s, redis_us = await timed_scripts(client, scripts_deciding(len(leads), plan.batch), len(leads),
                                                            lambda: decide(store, leads, plan.batch))
        expect(decisions, "queued", len(leads))
        await expect_waiting(store, waiting + len(leads))
        return Row.measured("new lead waits", f"{waiting:,} waiting", len(leads), wall_s, redis_us)
    finally:
        await drop_workspace(store)


async def close_and_drain(store: Store, held: str, count: int) -> list[Assignment]:
    """The rep closes the lead it holds `count` times; each close must hand it exactly one more."""
    handed: list[Assignment] = []
    for _ in range(count):
        outcome = await store.close(held, "won")
        if len(outcome.assignments) != 1:
            raise MeasurementError(f"closing {held} handed over {len(outcome.assignments)} leads, not 1")
        handed.append(outcome.assignments[0])
        held = handed[-1].lead_id
    return handed


async def drain(client: aioredis.Redis, plan: Plan, waiting: int) -> Row:
    store = new_store(client, f"drain{waiting}")
    try:
        # One lead for the rep to hold when it comes online, one per close, `waiting` left over.
        queued = make_leads("old", 1 + plan.drained_leads + waiting)
        await fill_wait_set(store, queued, plan.fill_batch)
        came_online = await put_rep(store, "closer", capacity=1)
        first = [a.lead_id for a in came_online.assignments]
        if first != [queued[0]["id"]]:
            raise MeasurementError(f"coming online, the rep took {first}, not the oldest lead {queued[0]['id']}")
        handed, wall_s, redis_us = await timed_scripts(
            client, plan.drained_leads, plan.drained_leads, lambda: close_and_drain(store, first[0], plan.drained_leads))
        # Everyone waits in one priority band: the oldest must go first, in the order they came.
        oldest_first = [(lead["id"], "closer") for lead in queued[1:1 + plan.drained_leads]]
        if [(a.lead_id, a.rep_id) for a in handed] != oldest_first:
            raise MeasurementError("the drain did not hand the closing rep the oldest waiting leads in order")
        await expect_waiting(store, waiting)
        return Row.measured("drain", f"{waiting:,} waiting", len(handed), wall_s, redis_us)
    finally:
        await drop_workspace(store)


async def batching(client: aioredis.Redis, plan: Plan, batched: bool) -> Row:
    store = new_store(client, "batched" if batched else "unbatched")
    try:
        await put_reps(store, plan.batching_reps, capacity=plan.batching_leads)
        leads = make_leads("lead", plan.batching_leads)
        work = (lambda: decide(store, leads, plan.batch)) if batched else (lambda: decide_one_by_one(store, leads))
        scripts = scripts_deciding(len(leads), plan.batch) if batched else len(leads)
        decisions, wall_s, redis_us = await timed_scripts(client, scripts, len(leads), work)
        expect(decisions, "assigned", len(leads))
        case = f"batches of {plan.batch}" if batched else "one by one"
        return Row.measured("batching", case, len(leads), wall_s, redis_us)
    finally:
        await drop_workspace(store)


async def load_scripts(client: aioredis.Redis) -> None:
    """Runs every script the cases use once, in a throwaway workspace, so Redis has them cached
    before anything is measured."""
    store = new_store(client, "warm-up")
    try:
        await put_rep(store, "rep", capacity=1)
        (decision,) = await store.assign_many([(lead, source(lead)) for lead in make_leads("lead", 1)])
        await store.close(decision.lead_id, "won")
    finally:
        await drop_workspace(store)


# --- the run ------------------------------------------------------------------------------------


LABELS = {"redis_us": "redis µs/lead", "wall_us": "wall µs/lead"}


def spread(rows: Sequence[Row], figure: str, field: str) -> dict[str, Any]:
    values = [getattr(row, field) for row in rows if row.figure == figure]
    value = max(values) / min(values)
    return {"ratio": f"{figure}: {LABELS[field]} max/min", "value": value,
            "target": f"<={TARGET}x", "met": value <= TARGET}


def ratios(rows: Sequence[Row]) -> list[dict[str, Any]]:
    out = [spread(rows, figure, field)
           for figure in ("reps in the queue", "new lead waits", "drain") for field in LABELS]
    on, off = (row for row in rows if row.figure == "batching")
    out.append({"ratio": "batching: leads/s on / off", "value": on.leads_per_s / off.leads_per_s,
                "target": None, "met": None})
    return out


async def machine(client: aioredis.Redis) -> dict[str, Any]:
    return {"cores": os.cpu_count(), "redis": (await client.info("server"))["redis_version"],
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg()}


async def run(plan: Plan, redis_url: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every case of the plan against the redis at `redis_url`, one after another; the summary."""
    client = connect(redis_url, POOL_SIZE)
    began = time.perf_counter()
    try:
        facts = {"when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": await machine(client)}
        await load_scripts(client)
        cases: list[Callable[[], Awaitable[Row]]] = [
            *(partial(reps_in_queue, client, plan, n) for n in plan.reps),
            *(partial(new_lead_waits, client, plan, n) for n in plan.waiting),
            *(partial(drain, client, plan, n) for n in plan.waiting),
            *(partial(batching, client, plan, on) for on in (True, False)),
        ]
        samples: list[list[Row]] = [[] for _ in cases]
        # Round after round of every case, rather than one case's rounds in a row: a slow spell
        # of the machine then falls on different cases' samples.
        for round_no in range(1, plan.rounds + 1):
            for found, case in zip(samples, cases, strict=True):
                sample = await case()
                found.append(sample)
                log(f"  round {round_no}  {sample.figure:<18} {sample.case:<18} redis {sample.redis_us:6.1f} µs, "
                    f"wall {sample.wall_us:6.1f} µs per lead")
        rows = [Row.of_rounds(found) for found in samples]
        load_after = os.getloadavg()
    finally:
        await client.aclose()
    return {**facts, "plan": asdict(plan), "rows": [row.summary() for row in rows],
            "ratios": ratios(rows), "load_average_after": load_after, "seconds": round(time.perf_counter() - began, 1)}


def _samples(values: Sequence[float]) -> str:
    return " ".join(f"{value:.0f}" for value in values)


def table(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    lines = [
        f"decision cost at the Redis level, {summary['when']}: {m['cores']} cores, redis {m['redis']}, "
        f"python {m['python']}",
        f"load average {'/'.join(f'{x:.2f}' for x in m['load_average'])} before, "
        f"{'/'.join(f'{x:.2f}' for x in summary['load_average_after'])} after (1/5/15 min)",
        "",
        f"{'figure':<18} {'case':<18}{'leads':>8}{'redis µs/lead':>15}{'each round':>18}{'wall µs/lead':>14}"
        f"{'each round':>18}{'leads/s':>9}",
    ]
    lines.append("-" * len(lines[-1]))
    for row in summary["rows"]:
        lines.append(f"{row['figure']:<18} {row['case']:<18}{row['leads']:>8,}{row['redis_us']:>15.1f}"
                     f"{_samples(row['redis_samples']):>18}{row['wall_us']:>14.1f}{_samples(row['wall_samples']):>18}"
                     f"{row['leads_per_s']:>9,.0f}")
    lines.append("")
    for ratio in summary["ratios"]:
        verdict = {True: "met", False: "MISSED", None: ""}[ratio["met"]]
        target = f"target {ratio['target']:<7} {verdict}" if ratio["target"] else ""
        lines.append(f"  {ratio['ratio']:<46}{ratio['value']:>7.2f}x   {target}")
    plan = summary["plan"]
    lines += [
        "",
        f"  each figure is the median of {plan['rounds']} rounds (listed under 'each round'), every round in",
        "  fresh workspaces. redis µs/lead: Redis's time in scripts (INFO commandstats, evalsha) over",
        f"  the leads, {LEADS_PER_SCRIPT} leads a script in batches; wall µs/lead: the Store calls' time over the leads, round trips included.",
        f"  reps in the queue: {plan['leads']:,} leads in batches of {plan['batch']}, every rep with room for all;",
        f"  new lead waits: {plan['queued_leads']:,} leads joining the wait set, no rep with room;",
        f"  drain: {plan['drained_leads']:,} closes, each handing the rep the oldest waiting lead; 'N waiting' is",
        "  what is left after them (the wait set shrinks from N + drained + 1 to N).",
    ]
    if summary.get("quick"):
        lines.append(f"  --quick: {max(plan['waiting']):,} waiting stands in for {max(FULL.waiting):,}, "
                     "and fewer leads per case.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer leads per case, 10,000 waiting at most")
    args = parser.parse_args(argv)
    with EmbeddedStack(Path(tempfile.mkdtemp(prefix="decision-cost-")), with_broker=False) as stack:
        summary = asyncio.run(run(QUICK if args.quick else FULL, stack.redis_url))
    summary["quick"] = args.quick
    report("decision-cost", summary, table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
