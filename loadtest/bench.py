"""`make bench`: the dispatcher against the bare limit, in one run on one fresh embedded stack.

Three systems read an input topic and write one event per input record to an output topic:

  aiokafka relay  consume (5 ms fetch wait), produce `{"lead_id"}`, nothing in between (loadtest/relays.py)
  faust relay     the same as a bare faust agent, with the dispatcher's transport (the same 5 ms wait)
  dispatcher      one `dispatcher worker`: validate, route, one Lua step in Redis, one assignment event,
                  with a roster so large that no lead waits (200 reps x capacity 1,000 by default)

Phases, each on FRESH topics and a freshly started process of the system (the broker slows as a
topic grows, docs/stack-notes.md), run phase by phase so the three systems of a phase see the broker in about
the same state:

  200/s, 1000/s     paced production (small batches on absolute 5 ms deadlines), latency from the
                    moment a record is handed to the producer to the moment its output event is
                    received by this process (fetch wait 5 ms), matched by id
  burst (idle)      the system running, warmed up and idle; N records produced flat out; throughput
                    from the first to the last output event
  burst (backlog)   N records produced BEFORE the system starts; it then starts and drains them;
                    throughput from the first to the last output event

Every process is warmed up (a few hundred records, not counted) before a measured phase, except
in the backlog phase, where the backlog is the first thing it reads. Each row also shows the CPU
the system, the broker, redis and this process used while it was measured: on a small machine the
broker alone takes most of a core at 1,000/s, so tails follow from how busy the cores are.

Topic lengths are counted from the offsets this process saw (delivery reports for the input, the
records read for the output): the embedded broker answers ListOffsets(latest) with the base offset
of a topic's last batch, which is short by that batch's size once producers batch.

    python -m loadtest.bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dispatcher.embedded import EmbeddedStack, WorkerProcess, _die_with_parent, free_port
from loadtest.reporting import report

PARTITIONS = 4  # the dispatcher's default topic_partitions; the relays' topics get the same
FETCH_MAX_WAIT_MS = 5
TICK_S = 0.005  # paced production: one small batch per 5 ms deadline
SYSTEMS = ("aiokafka relay", "faust relay", "dispatcher")
# Variants of the dispatcher that only the idle burst measures: how throughput scales with a
# second worker process, and what batching decisions into one Redis round trip is worth.
VARIANTS = ("dispatcher x2", "dispatcher unbatched")
PACED_WARMUP_RATE = 500


@dataclass(frozen=True)
class Plan:
    rates: tuple[int, ...] = (200, 1000)
    seconds: float = 10.0
    warmup: int = 300
    burst: int = 20_000
    idle_burst: bool = True
    backlog_burst: bool = True
    reps: int = 200
    capacity: int = 1000
    settle_s: float = 30.0
    start_timeout_s: float = 60.0
    systems: tuple[str, ...] = SYSTEMS
    # Every phase is repeated, the systems' order rotating each round: at 1,000/s the broker takes
    # most of a core, single runs of the same system differ by tens of ms at p99, and a burst's
    # throughput by a third between runs on a shared virtual machine.
    rounds: int = 3
    variants: tuple[str, ...] = VARIANTS


FULL = Plan()
QUICK = Plan(seconds=2.0, warmup=100, burst=3000, settle_s=20.0, rounds=1)


@dataclass
class Row:
    system: str
    phase: str
    topics: str
    sent: int
    matched: int
    send_rate: float  # what the producer achieved, records/s
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    throughput: float | None = None  # output events/s, first to last
    input_len: int = 0  # records in the input topic at the end of the phase
    output_len: int = 0
    seconds: float = 0.0  # wall time of the phase, start-up included
    round: int = 1
    extra: dict = field(default_factory=dict)


def cpu_seconds() -> tuple[float, float]:
    """(CPU time the whole machine has spent busy, CPU time of this process and its reaped children)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                resource.getrusage(resource.RUSAGE_CHILDREN)))
    return busy, own


def others_cpu_share(before: tuple[float, float], wall: float) -> float:
    """The share of the machine's cores that processes other than this one and its children used
    since cpu_seconds() returned `before`, `wall` seconds ago."""
    busy_after, own_after = cpu_seconds()
    return max(0.0, (busy_after - before[0]) - (own_after - before[1])) / (wall * (os.cpu_count() or 1))


def others_note(share: float) -> str:
    """The line under a table that says how busy the machine was with other work meanwhile."""
    return (f"  other processes on this machine used {share:.0%} of its {os.cpu_count()} cores meanwhile"
            + (" -- figures are noisy; run again on a quiet machine" if share > 0.1 else ""))


def process_cpu_s(pids: list[int]) -> float:
    """CPU seconds some processes have used so far (all their threads)."""
    used = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def process_waiting_s(pids: list[int]) -> float:
    """Seconds some processes' threads have spent ready to run while no core was free for them
    (the scheduler's run queue, /proc/PID/task/TID/schedstat): what the machine, not their own
    work, held them up by. Threads that ended meanwhile take their share with them."""
    waited_ns = 0
    for pid in pids:
        for schedstat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                waited_ns += int(schedstat.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return waited_ns / 1e9


class CpuWatch:
    """Share of one core each part used between start() and stop(): where the time goes; and how
    long each part's threads waited for a core meanwhile."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def start(self) -> CpuWatch:
        self.began = time.perf_counter()
        self.used = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        self.waited = {name: process_waiting_s(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        """Each part's share of one core; its CPU seconds stay in `cpu_s`, its seconds waiting for a
        core in `waiting_s`, and the seconds watched in `wall` (per-lead costs need them unrounded)."""
        self.wall = wall = time.perf_counter() - self.began
        self.cpu_s = {name: process_cpu_s(pid) - self.used[name] for name, pid in self.pids.items()}
        self.waiting_s = {name: process_waiting_s(pid) - self.waited[name] for name, pid in self.pids.items()}
        return {name: round(used / wall, 2) for name, used in self.cpu_s.items()}


def percentile(ordered: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def lead_value(lead_id: str) -> bytes:
    return orjson.dumps({"id": lead_id, "channel": "web", "priority": 5})


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


class Probe:
    """The measuring side of one phase: produces to the system's input topic, consumes its output
    topic (fetch wait 5 ms, from the earliest offset: the topics are fresh) and matches by id."""

    def __init__(self, bootstrap: str, source: str, target: str) -> None:
        self.bootstrap, self.source, self.target = bootstrap, source, target
        self.sent_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.received_at: list[float] = []
        self.created_ms: list[int] = []  # the output records' own timestamps: when the system produced them
        self.unmatched = 0
        # Topic lengths come from offsets seen, not from ListOffsets: Tansu answers "latest" with the
        # base offset of the last batch, short by that batch's size once producers batch.
        self.input_ends: dict[int, int] = {}
        self.output_ends: dict[int, int] = {}

    async def __aenter__(self) -> Probe:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            self.target, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await self.producer.start()
        await self.consumer.start()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.producer.stop()
        await self.consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    self.output_ends[message.partition] = max(self.output_ends.get(message.partition, 0),
                                                              message.offset + 1)
                    started = self.sent_at.pop(orjson.loads(message.value)["lead_id"], None)
                    if started is None:
                        self.unmatched += 1  # a repeat, or a record of an earlier step
                    else:
                        self.latencies_ms.append((now - started) * 1000)
                        self.received_at.append(now)
                        self.created_ms.append(message.timestamp)

    def reset(self) -> None:
        self.sent_at.clear()
        self.latencies_ms, self.received_at, self.created_ms, self.unmatched = [], [], [], 0

    async def _send(self, lead_id: str) -> None:
        self.sent_at[lead_id] = time.perf_counter()  # the moment it is handed to the producer
        delivery = await self.producer.send(self.source, key=lead_id.encode(), value=lead_value(lead_id))
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is None:
            meta = delivery.result()
            self.input_ends[meta.partition] = max(self.input_ends.get(meta.partition, 0), meta.offset + 1)

    async def paced(self, tag: str, count: int, rate: float) -> float:
        """`count` records at `rate`/s: at each 5 ms deadline (absolute, so lateness never
        accumulates into drift) whatever is due by then. Returns the rate achieved."""
        start = time.perf_counter()
        sent, tick, self.late_max_ms = 0, 0, 0.0
        while sent < count:
            tick += 1
            delay = start + tick * TICK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_max_ms = max(self.late_max_ms, -delay * 1000)
            due = min(count, int(rate * tick * TICK_S + 1e-9))
            while sent < due:
                await self._send(f"{tag}-{sent}")
                sent += 1
        await self.producer.flush()
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.01)  # the delivery callbacks (topic lengths) run
        return count / elapsed

    async def flat_out(self, tag: str, count: int) -> float:
        start = time.perf_counter()
        for n in range(count):
            await self._send(f"{tag}-{n}")
        await self.producer.flush()
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.01)  # the delivery callbacks (topic lengths) run
        return count / elapsed

    async def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.latencies_ms) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let any repeat arrive and be counted
        return True

    def lengths(self) -> tuple[int, int]:
        """Records in the input topic (all produced here) and the output topic (all read here)."""
        return sum(self.input_ends.values()), sum(self.output_ends.values())


class Relay:
    """A relay of loadtest/relays.py as a child process, on one input and one output topic."""

    def __init__(self, kind: str, stack: EmbeddedStack, workdir: Path, env: dict[str, str]) -> None:
        self.kind, self.stack, self.workdir, self.env = kind, stack, workdir, env
        self.name = f"{kind} relay"
        self.process: subprocess.Popen[bytes] | None = None

    async def prepare(self, tag: str) -> tuple[str, str]:
        source, target = f"{tag}.in", f"{tag}.out"
        await create_topics(self.stack.broker_url.removeprefix("kafka://"), [source, target])
        return source, target

    async def start(self, source: str, target: str, timeout_s: float) -> None:
        self.log = self.workdir / f"{source}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loadtest.relays", self.kind, "--broker", self.stack.broker_url,
                 "--in", source, "--out", target, "--port", str(free_port())],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **self.stack.worker_env, **self.env},
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while b"ready" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the {self.name} did not start; its log {self.log}:\n{self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def terminate(self) -> None:
        process, self.process = self.process, None
        _stop(process)

    def stop(self) -> asyncio.Future:
        return asyncio.ensure_future(asyncio.to_thread(self.terminate))


class Roster:
    """The reps every dispatcher system of a run decides among, in one Redis workspace: made
    once, over the first worker's HTTP API, and used by every later worker."""

    def __init__(self, run_id: str) -> None:
        self.workspace = f"bench-{run_id}"
        self.ready = False

    async def put(self, base_url: str, plan: Plan) -> None:
        """Reps with room for every lead of the run, so none waits: PUT and presence over HTTP."""
        async with aiohttp.ClientSession() as session:

            async def one(n: int) -> None:
                rep = f"{base_url}/v1/reps/bench-{n}"
                for method, url, body in (("PUT", rep, {"capacity": plan.capacity}),
                                          ("POST", f"{rep}/presence", {"status": "online"})):
                    async with session.request(method, url, json=body) as response:
                        if response.status != 200:
                            raise RuntimeError(f"{method} {url}: {response.status} {await response.text()}")

            for start in range(0, plan.reps, 20):
                await asyncio.gather(*(one(n) for n in range(start, min(start + 20, plan.reps))))
        self.ready = True


class Dispatcher:
    """`dispatcher worker` processes (WorkerProcess), started afresh for each phase on topics of
    its own (a fresh DISPATCHER_TOPIC_PREFIX), all in one Redis workspace that holds the roster.
    `workers` processes share the phase's topics as one consumer group."""

    def __init__(self, stack: EmbeddedStack, workdir: Path, env: dict[str, str], plan: Plan, roster: Roster,
                 *, name: str = "dispatcher", workers: int = 1) -> None:
        self.stack, self.workdir, self.env, self.plan, self.roster = stack, workdir, env, plan, roster
        self.name, self.workers_wanted = name, workers
        self.workers: list[WorkerProcess] = []

    async def prepare(self, tag: str) -> tuple[str, str]:
        self.prefix = f"{tag}."
        await create_topics(self.stack.broker_url.removeprefix("kafka://"),
                            [self.prefix + name for name in ("leads", "assignments", "rep-events", "leads-dlq")])
        self.log = self.workdir / f"{tag}.log"
        return self.prefix + "leads", self.prefix + "assignments"

    async def start(self, source: str, target: str, timeout_s: float) -> None:
        env = {
            **self.env,
            **self.stack.worker_env,
            "DISPATCHER_TOPIC_PREFIX": self.prefix,
            "DISPATCHER_WORKSPACE": self.roster.workspace,
            "DISPATCHER_ALLOW_ANONYMOUS": "1",
            "DISPATCHER_HTTP_BIND": "127.0.0.1",
            # Every phase's worker must find the roster online without a heartbeat of its own,
            # including the backlog phase's, which drains before anyone could send one.
            "DISPATCHER_PRESENCE_TTL_S": "3600",
        }
        self.workers = [
            WorkerProcess({**env, "DISPATCHER_WORKER_ID": f"{self.prefix}{n}"}, free_port(),
                          self.log.with_suffix(f".{n}.log"))
            for n in range(1, self.workers_wanted + 1)
        ]
        await asyncio.gather(*(asyncio.to_thread(worker.start, timeout_s) for worker in self.workers))
        if not self.roster.ready:
            await self.roster.put(f"http://127.0.0.1:{self.workers[0].http_port}", self.plan)

    async def ensure_roster(self, tag: str, timeout_s: float) -> None:
        """The roster must be in place before a worker that starts on a backlog reads it; made
        by the first phase's worker, or here by a worker of its own when no phase came before."""
        if not self.roster.ready:
            source, target = await self.prepare(f"{tag}-roster")
            try:
                await self.start(source, target, timeout_s)
            finally:
                await self.stop()

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers if worker.process]

    def stop(self) -> asyncio.Future:
        workers, self.workers = self.workers, []
        return asyncio.gather(*(asyncio.to_thread(worker.terminate) for worker in workers))


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def latency_figures(probe: Probe) -> dict[str, float]:
    ordered = sorted(probe.latencies_ms)
    if not ordered:
        return {}
    return {"p50_ms": percentile(ordered, 0.50), "p95_ms": percentile(ordered, 0.95),
            "p99_ms": percentile(ordered, 0.99), "max_ms": ordered[-1]}


def rate_between(first: float, last: float, count: int) -> float | None:
    return (count - 1) / (last - first) if count > 1 and last > first else None


async def warm_up(probe: Probe, tag: str, plan: Plan) -> None:
    """A few hundred records through the whole path (group join, first fetches, connections,
    script loads) before anything is measured; they count in the topic lengths, not the figures."""
    await probe.paced(f"{tag}-warm", plan.warmup, PACED_WARMUP_RATE)
    if not await probe.wait_for(plan.warmup, plan.start_timeout_s):
        raise RuntimeError(f"{tag}: only {len(probe.latencies_ms)} of {plan.warmup} warm-up records came through")
    probe.reset()


async def run_phase(system: Relay | Dispatcher, phase: str, tag: str, stack: EmbeddedStack, plan: Plan,
                    stopping: list[asyncio.Future]) -> Row:
    """One row: fresh topics, a fresh process of the system, measured. The previous row's process
    shuts down while this one starts (a group join takes seconds); `stopping` holds those
    shutdowns, and nothing is measured before they are over."""
    bootstrap = stack.broker_url.removeprefix("kafka://")
    began = time.perf_counter()
    if phase == "burst (backlog)" and isinstance(system, Dispatcher):
        await system.ensure_roster(tag, plan.start_timeout_s)
    source, target = await system.prepare(tag)
    extra: dict = {}
    async with Probe(bootstrap, source, target) as probe:
        try:
            if phase == "burst (backlog)":
                await _all_stopped(stopping)
                sent = plan.burst
                send_rate = await probe.flat_out(tag, sent)
                extra["input_len_before_start"] = probe.lengths()[0]
                started = time.perf_counter()
                await system.start(source, target, plan.start_timeout_s)
                extra["start_s"] = round(time.perf_counter() - started, 2)
                cpu = CpuWatch(pids(system, stack)).start()  # the drain has begun during start-up
            else:
                started = time.perf_counter()
                await system.start(source, target, plan.start_timeout_s)
                extra["start_s"] = round(time.perf_counter() - started, 2)
                await _all_stopped(stopping)
                await warm_up(probe, tag, plan)
                cpu = CpuWatch(pids(system, stack)).start()
                if phase == "burst (idle)":
                    sent = plan.burst
                    send_rate = await probe.flat_out(tag, sent)
                else:
                    rate = int(phase.removesuffix("/s"))
                    sent = int(rate * plan.seconds)
                    send_rate = await probe.paced(tag, sent, rate)
                    extra["pace_late_max_ms"] = round(probe.late_max_ms, 1)  # this side behind its schedule
            await probe.wait_for(sent, plan.settle_s if is_paced(phase) else max(plan.settle_s, sent / 500))
            extra["cpu"] = cpu.stop()
            extra["cpu_s"], extra["cpu_window_s"], extra["waiting_s"] = cpu.cpu_s, cpu.wall, cpu.waiting_s
            input_len, output_len = probe.lengths()
        finally:
            stopping.append(system.stop())
    if probe.unmatched:
        extra["unmatched_output_events"] = probe.unmatched
    row = Row(system.name, phase, "fresh", sent, len(probe.latencies_ms), send_rate, input_len=input_len,
              output_len=output_len, seconds=time.perf_counter() - began, extra=extra)
    if is_paced(phase):
        for name, value in latency_figures(probe).items():
            setattr(row, name, value)
    else:
        # First to last output event as the system stamped them when producing (ms, one clock for
        # all processes here), so this side's fetch batching does not blur a fast system's span.
        row.throughput = rate_between(min(probe.created_ms, default=0) / 1000,
                                      max(probe.created_ms, default=0) / 1000, len(probe.created_ms))
        row.extra["received_rate"] = rate_between(min(probe.received_at, default=0),
                                                  max(probe.received_at, default=0), len(probe.received_at))
        row.extra.update({f"wait_{k}": v for k, v in latency_figures(probe).items()})
    return row


def systems_on(stack: EmbeddedStack, workdir: Path, env: dict[str, str], plan: Plan,
               roster: Roster) -> dict[str, Relay | Dispatcher]:
    """Every system and variant by name, on one stack; the dispatchers share the roster."""
    return {
        "aiokafka relay": Relay("aiokafka", stack, workdir, env),
        "faust relay": Relay("faust", stack, workdir, env),
        "dispatcher": Dispatcher(stack, workdir, env, plan, roster),
        "dispatcher x2": Dispatcher(stack, workdir, env, plan, roster, name="dispatcher x2", workers=2),
        "dispatcher unbatched": Dispatcher(stack, workdir, {**env, "DISPATCHER_BATCH_MAX": "1"}, plan, roster,
                                           name="dispatcher unbatched"),
    }


def pids(system: Relay | Dispatcher, stack: EmbeddedStack) -> dict[str, list[int]]:
    return {"system": system.pids, "broker": [stack._broker.pid] if stack._broker else [],
            "redis": [stack._redis.pid] if stack._redis else [], "bench": [os.getpid()]}


async def _all_stopped(stopping: list[asyncio.Future]) -> None:
    while stopping:
        await stopping.pop()


def is_paced(phase: str) -> bool:
    return phase.endswith("/s")


def phases_of(plan: Plan) -> list[str]:
    return ([f"{rate}/s" for rate in plan.rates] + (["burst (idle)"] if plan.idle_burst else [])
            + (["burst (backlog)"] if plan.backlog_burst else []))


def schedule(plan: Plan) -> list[tuple[str, str, int]]:
    """(system, phase, round) in the order they run: paced phases round by round, then each burst
    round by round, each round starting one system later, so no system always runs first on a
    fresh broker. The dispatcher's variants run in the first idle-burst round only: their ratios
    are against that round's dispatcher."""
    runs = []
    for round_ in range(1, plan.rounds + 1):
        runs += [(system, f"{rate}/s", round_) for rate in plan.rates for system in rotated(plan.systems, round_)]
    for phase in phases_of(plan)[len(plan.rates):]:
        for round_ in range(1, plan.rounds + 1):
            runs += [(system, phase, round_) for system in rotated(plan.systems, round_)]
            if phase == "burst (idle)" and round_ == 1:
                runs += [(variant, phase, 1) for variant in plan.variants]
    return runs


def rotated(systems: tuple[str, ...], round_: int) -> tuple[str, ...]:
    return systems[round_ - 1:] + systems[:round_ - 1]


async def run_bench(plan: Plan, *, workdir: Path | None = None, log=print) -> dict:  # type: ignore[no-untyped-def]
    """The whole bench on one fresh embedded stack; returns the summary (rows and ratios). The
    logs of the broker, redis and every process stay in `workdir` (a new temporary one by default)."""
    run_id = uuid.uuid4().hex[:6]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dispatcher-bench-"))
    env = {"DISPATCHER_DATA_DIR": str(workdir / "data")}
    began = time.perf_counter()
    cpu_before = cpu_seconds()
    rows: list[Row] = []
    with EmbeddedStack(workdir) as stack:
        log(f"bench {run_id}: broker {stack.broker_url}, redis {stack.redis_url}, logs in {workdir}")
        systems = systems_on(stack, workdir, env, plan, Roster(run_id))
        stopping: list[asyncio.Future] = []
        try:
            for n, (name, phase, round_) in enumerate(schedule(plan)):
                tag = f"b{run_id}-{n:02d}"
                row = await run_phase(systems[name], phase, tag, stack, plan, stopping)
                row.round = round_
                rows.append(row)
                log(f"  {row.system:<20} {row.phase:<16} r{round_} matched {row.matched}/{row.sent} in {row.seconds:.1f} s"
                    + (f", p99 {row.p99_ms:.1f} ms" if row.p99_ms is not None else "")
                    + (f", {row.throughput:,.0f}/s" if row.throughput else "")
                    + f" (start-up {row.extra['start_s']:.1f} s)")
        finally:
            await _all_stopped(stopping)
    wall = time.perf_counter() - began
    return {
        "plan": asdict(plan),
        "rows": [asdict(row) for row in rows],
        "ratios": ratios(rows, plan),
        "records_written": sum(row.input_len + row.output_len for row in rows),
        "seconds": round(wall, 1),
        # Processes outside this bench (its broker, redis and systems are its children) that used
        # the cores meanwhile: the figures are only comparable when this is near zero.
        "others_cpu_share": others_cpu_share(cpu_before, wall),
        "logs": str(workdir),
    }


def ratio_of_rounds(name: str, mine: list[float | None], other: list[float | None], target: str | None) -> dict:
    """mine / other, round by round, and their median; `target` like "<=1.5x" or ">=0.8x"."""
    per_round = [a / b if a and b else None for a, b in zip(mine, other)]
    known = [value for value in per_round if value is not None]
    value = statistics.median(known) if known else None
    met = None
    if value is not None and target is not None:
        bound = float(target[2:].rstrip("x"))
        met = value <= bound if target.startswith("<=") else value >= bound
    return {"ratio": name, "value": value, "target": target, "met": met,
            "per_round": per_round if len(per_round) > 1 else None}


def ratios(rows: list[Row], plan: Plan) -> list[dict]:
    """The figures the targets are about. Each is the median over rounds, with each
    round's own ratio beside it, so one noisy run can neither pass nor fail a target alone."""
    out = []

    def rows_of(system: str, phase: str) -> list[Row]:
        return sorted((row for row in rows if row.system == system and row.phase == phase), key=lambda r: r.round)

    if plan.rates:
        rate = f"{max(plan.rates)}/s"
        mine = rows_of("dispatcher", rate)
        for relay in ("aiokafka relay", "faust relay"):
            other = rows_of(relay, rate)
            out.append(ratio_of_rounds(f"dispatcher p99 / {relay} p99 at {rate}", [r.p99_ms for r in mine],
                                       [r.p99_ms for r in other], "<=1.5x"))
    for phase in ("burst (idle)", "burst (backlog)"):
        mine, faust = rows_of("dispatcher", phase), rows_of("faust relay", phase)
        if mine or faust:
            out.append(ratio_of_rounds(f"dispatcher / faust relay throughput, {phase}", [r.throughput for r in mine],
                                       [r.throughput for r in faust], ">=0.8x"))
    for variant in plan.variants:
        theirs, mine = rows_of(variant, "burst (idle)"), rows_of("dispatcher", "burst (idle)")
        if theirs and mine:
            out.append(ratio_of_rounds(f"{variant} / dispatcher throughput, burst (idle)",
                                       [r.throughput for r in theirs], [r.throughput for r in mine], None))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(summary: dict) -> str:
    lines = [f"{'system':<20} {'phase':<16}{'rnd':>4}{'sent':>7}{'matched':>8}{'sent/s':>8}"
             f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'out/s':>8}{'in len':>8}{'out len':>8}"]
    lines.append("-" * len(lines[0]))
    for row in summary["rows"]:
        out_rate = "-" if row["throughput"] is None else f"{row['throughput']:.0f}"
        lines.append(
            f"{row['system']:<20} {row['phase']:<16}{row['round']:>4}{row['sent']:>7}{row['matched']:>8}"
            f"{row['send_rate']:>8.0f}{_ms(row['p50_ms']):>8}{_ms(row['p95_ms']):>8}{_ms(row['p99_ms']):>8}"
            f"{_ms(row['max_ms']):>8}{out_rate:>8}{row['input_len']:>8}{row['output_len']:>8}"
        )
    lines += ["", f"{'cores busy while measured':<41}{'system':>8}{'broker':>8}{'redis':>8}{'bench':>8}"
              f"{'system CPU per event':>23}"]
    for row in summary["rows"]:
        cpu = row["extra"].get("cpu", {})
        per_event = cpu.get("system", 0) * 1e6 / (row["throughput"] or row["send_rate"])
        lines.append(f"{row['system']:<20} {row['phase']:<16}{row['round']:>4}" + "".join(f"{cpu.get(k, 0):>8.2f}" for k in
                     ("system", "broker", "redis", "bench")) + f"{per_event:>20.0f} us")
    lines.append("")
    for ratio in summary["ratios"]:
        value = "n/a" if ratio["value"] is None else f"{ratio['value']:.2f}x"
        target = "(no target)"
        if ratio["target"]:
            target = f"target {ratio['target']:<7} " + {True: "met", False: "MISSED", None: "n/a"}[ratio["met"]]
        rounds = ", ".join("n/a" if v is None else f"{v:.2f}" for v in ratio["per_round"] or [])
        lines.append(f"  {ratio['ratio']:<62}{value:>8}   {target:<22}"
                     + (f" median of rounds: {rounds}" if rounds else ""))
    lines += [
        "",
        "  rnd: the round of a phase (systems take turns going first); a ratio is the median",
        "  of the rounds' ratios. dispatcher x2: two worker processes in one group; dispatcher unbatched:",
        "  DISPATCHER_BATCH_MAX=1, one Redis round trip per lead.",
        "  topics: every row ran on fresh topics (its own input and output topic, a new process of the",
        "  system, a new consumer group); 'in len' / 'out len' are the records in them at the row's end,",
        f"  warm-up included. All rows' topics together: {summary['records_written']:,} records.",
        "  latency: handed to the producer -> output event received here (fetch wait 5 ms on both hops).",
        "  burst (idle): produced flat out to the warmed-up, idle system; burst (backlog): produced before",
        "  the system started. out/s = output events from the first to the last, by the timestamps the system",
        "  put on them; sent/s = the rate this side's producer achieved (the pace, or flat out): where out/s",
        "  comes near it, this side's producer, not the system, set the pace.",
        "  cores busy: CPU each process used over the measured part (1.00 = one core); per event: the",
        f"  system's CPU over its output rate. A row's columns together = how busy the {os.cpu_count()} cores were.",
        others_note(summary["others_cpu_share"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases (2 s paced, 3,000-record bursts)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    summary = asyncio.run(run_bench(plan))
    summary.update(quick=args.quick, when=time.strftime("%Y-%m-%d %H:%M:%S"),
                   machine={"cores": os.cpu_count(), "python": sys.version.split()[0]})
    report("bench", summary, table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
