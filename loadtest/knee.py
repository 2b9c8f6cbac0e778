"""`make knee` (and the end of `make loadtest`): the highest rate each system holds, issue #12.

Systems (loadtest/bench.py's): "dispatcher" (one worker), "dispatcher x2" (two workers in one
group), "faust relay" (a bare faust agent with the dispatcher's transport) and "aiokafka relay"
(plain aiokafka, two hops). Each climbs a ladder of paced rates, 250/s, 500/s, ... 4,000/s by
default. Every step runs on FRESH topics with a freshly started process of the system (the
embedded broker slows as a topic grows, docs/stack-notes.md): warmed up, then paced at the step's
rate for `seconds` (bench.run_phase: latency from the moment a record is handed to the producer to
the moment its output event is read back here, matched by id). A step

  held     every record came out within the settle time, and p99 <= 100 ms;
  lost     some record had not come out when the settle time ran out;
  slow     all came out, p99 over 100 ms;
  unpaced  this side's producer could not keep the pace: it sent below 95% of the rate, or fell
           more than the p99 budget behind its schedule at some tick (the burst that follows such
           a stall can alone cost the budget). That says nothing about the system, so it is not
           counted against it; it still ends the ladder, and the knee is then a lower bound.

Each step is tried up to three times (`--retries 2`), each try on fresh topics and a fresh
process, and holds when most of its tries hold; the tries stop once that is settled (two alike).
Noise on a shared 2-core machine is large (the same p99 moves by a third between runs): with one
try, or with a step held when either of two tries held, one lucky or unlucky try decided a knee,
and the knee ratio of two systems moved by a step between runs of the same code. A system's
ladder ends at its first step that does not hold; its knee is the highest rate it held. All
systems climb together, rate by rate, taking turns going first, so at each rate they meet the
broker and the machine in about the same state.

Then each ladder that ended is refined (`--refine`, 50/s): from its knee up towards the step that
ended it, in the finer steps, until one does not hold. A 250/s ladder alone can only tell 500 from
750/s, so a ratio of two knees below 1,000/s could only be 0.67x, 0.75x or 1.00x, and one step
decided it.

The p99 ratio at 1,000/s (dispatcher against the aiokafka relay) is taken from rounds of its own
(`--ratio-rounds`, 3): the two systems run that step in turn, the first of each round rotating,
and the ratio is the median of the rounds' ratios. The ladder's own 1,000/s step would not do: its
tries stop once two agree, and its figures are those of the tries on the side that won. When the
bare faust agent climbs too, it runs the rounds as well, and its own ratio to the relay is printed
beside (no target): what of the gap faust itself makes.

Per step: p50/p95/p99/max, matched/sent, and the CPU seconds of each part (the system, the
broker, redis, this process) over the measured part (the paced seconds and the wait for the last
record) divided by the records sent: CPU ms per lead. It holds the parts' idle cost (the broker
polls, the worker's timers), which weighs less the higher the rate: compare parts at the knee.

    python -m loadtest.knee [--systems dispatcher "faust relay"] [--start 250] [--step 250] [--top 4000]
                            [--refine 50] [--ratio-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dispatcher.embedded import EmbeddedStack
from loadtest.bench import (PARTITIONS, Plan, Roster, Row, _all_stopped, cpu_seconds, others_cpu_share, others_note,
                            ratio_of_rounds, rotated, run_phase, systems_on)
from loadtest.reporting import report

SYSTEMS = ("dispatcher", "dispatcher x2", "faust relay", "aiokafka relay")
PARTS = ("system", "broker", "redis", "bench")
PACE_SHARE = 0.95  # below this share of the rate asked, the producer, not the system, set the pace
MAX_REP_CAPACITY = 10_000  # the API's ceiling on a rep's capacity (dispatcher/models.py Count)
# The sizing rule's assumptions (sizing()).
HEADROOM = 0.7
SIZING_RATES = (1_000, 3_000, 10_000)
RATIO_RATE = 1_000  # the p99 ratio: the dispatcher against the aiokafka relay at this rate
RATIO_SYSTEMS = ("dispatcher", "aiokafka relay")
# Runs the ratio's rounds too when climbing: its own ratio to the relay, beside the dispatcher's,
# shows what of the gap is faust's.
RATIO_REFERENCE = "faust relay"
# The names the summary gives the two ratios and the reference's (loadtest/knee_runs.py reads them).
KNEE_RATIO = "dispatcher knee / faust relay knee"
P99_RATIO = f"{RATIO_SYSTEMS[0]} p99 / {RATIO_SYSTEMS[1]} p99 at {RATIO_RATE}/s"
REFERENCE_RATIO = f"{RATIO_REFERENCE} p99 / {RATIO_SYSTEMS[1]} p99 at {RATIO_RATE}/s"


@dataclass(frozen=True)
class Ladder:
    start: int = 250
    step: int = 250
    top: int = 4_000
    seconds: float = 10.0
    warmup: int = 300
    settle_s: float = 10.0
    retries: int = 2  # more tries of each step: it holds when most of its 1 + retries tries hold
    p99_budget_ms: float = 100.0
    systems: tuple[str, ...] = SYSTEMS
    reps: int = 200
    start_timeout_s: float = 60.0
    refine: int = 50  # 0: no refining
    ratio_rounds: int = 3

    @property
    def rates(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.top + 1, self.step))

    def refined_rates(self, knee: int | None, ended_at: int) -> tuple[int, ...]:
        """The finer steps between a ladder's knee and the step that ended it; none without a knee."""
        if not self.refine or knee is None:
            return ()
        return tuple(range(knee + self.refine, ended_at, self.refine))

    @property
    def measures_ratio(self) -> bool:
        return self.ratio_rounds > 0 and set(RATIO_SYSTEMS) <= set(self.systems)

    @property
    def ratio_systems(self) -> tuple[str, ...]:
        """Who runs the ratio's rounds: RATIO_SYSTEMS, and RATIO_REFERENCE when it climbs too."""
        if not self.measures_ratio:
            return ()
        return RATIO_SYSTEMS + ((RATIO_REFERENCE,) if RATIO_REFERENCE in self.systems else ())

    def plan(self) -> Plan:
        """bench.run_phase's plan for a step. Nobody closes a lead here, so the roster gets room
        for every lead the dispatcher systems could be sent over the whole ladder, retries and
        warm-ups included: a lead that found no room would wait, and count as lost."""
        def leads(rate: int) -> int:
            return int(rate * self.seconds) + self.warmup

        dispatchers = sum(name.startswith("dispatcher") for name in self.systems)
        refined_at_most = self.step // self.refine if self.refine else 0
        climbed = sum(map(leads, self.rates)) + refined_at_most * leads(self.top)
        most = dispatchers * (1 + self.retries) * climbed + self.measures_ratio * self.ratio_rounds * leads(RATIO_RATE)
        reps = max(self.reps, math.ceil(most / MAX_REP_CAPACITY))
        return Plan(rates=self.rates, seconds=self.seconds, warmup=self.warmup, reps=reps,
                    capacity=max(1, math.ceil(most / reps)), settle_s=self.settle_s,
                    start_timeout_s=self.start_timeout_s, systems=self.systems, rounds=1, variants=())


def rate_of(row: Row) -> int:
    return int(row.phase.removesuffix("/s"))


def verdict(row: Row, ladder: Ladder) -> str:
    """held, or why not: unpaced (this side's fault, checked first), lost, slow (module docstring)."""
    if (row.send_rate < PACE_SHARE * rate_of(row)
            or row.extra.get("pace_late_max_ms", 0.0) > ladder.p99_budget_ms):
        return "unpaced"
    if row.matched < row.sent:
        return "lost"
    if row.p99_ms is None or row.p99_ms > ladder.p99_budget_ms:
        return "slow"
    return "held"


def step_holds(attempts: Sequence[Row], tries: int) -> bool | None:
    """Whether a step holds by most of its `tries`, from the attempts so far; None while the tries
    left could still go either way."""
    held = sum(row.extra["verdict"] == "held" for row in attempts)
    if 2 * held > tries:
        return True
    if 2 * (len(attempts) - held) >= tries:
        return False
    return None


def typical(attempts: Sequence[Row]) -> Row:
    """The attempt with the median p99 (the higher of two middles; no p99 counts as the worst)."""
    ordered = sorted(attempts, key=lambda row: math.inf if row.p99_ms is None else row.p99_ms)
    return ordered[len(ordered) // 2]


def climb(rows: list[Row], tries: int) -> tuple[list[Row], Row | None]:
    """One system's steps (attempts as rounds) -> (for each rate held, rising, up to the first step
    that did not hold: its typical held attempt; that step's typical failed attempt, None when
    every step held). The knee is the last held rate."""
    by_rate: dict[int, list[Row]] = {}
    for row in rows:
        by_rate.setdefault(rate_of(row), []).append(row)
    held_steps = []
    for _, attempts in sorted(by_rate.items()):
        held = [row for row in attempts if row.extra["verdict"] == "held"]
        if not step_holds(attempts, tries):
            return held_steps, typical([row for row in attempts if row not in held] or attempts)
        held_steps.append(typical(held))
    return held_steps, None


def cpu_ms_per_lead(cpu_s: dict[str, float], sent: int) -> dict[str, float]:
    return {part: used * 1000 / sent for part, used in cpu_s.items()} if sent else {}


def cpu_line(held: list[Row]) -> dict[str, dict[str, float]] | None:
    """Per part, a straight line through the held steps: cores busy = idle + rate x cost. The cost
    (the slope, in ms per lead) leaves out what a part burns at any rate (the broker's polls, the
    worker's timers), of which the CPU per lead at a low knee is mostly made; the sizing rule wants
    both apart. None below two held rates; a part's line is None where its slope is not above zero
    (a relay's Redis; or noise larger than the cost)."""
    if len(held) < 2:
        return None
    line: dict = {}
    for part in PARTS:
        slope, idle = statistics.linear_regression(
            [rate_of(row) for row in held], [row.extra["cpu_s"][part] / row.extra["cpu_window_s"] for row in held])
        line[part] = {"ms_per_lead": slope * 1000, "idle_cores": max(0.0, idle)} if slope > 0 else None
    return line


@dataclass(frozen=True)
class Sizing:
    leads_per_s: int
    workers: int
    partitions: int
    per_worker_per_s: int
    redis_cores: float | None  # of one core: one Redis serves every worker of a workspace


def sizing(leads_per_s: int, *, worker_cpu_ms: float, worker_knee: int, worker_idle_cores: float = 0.0,
           redis_cpu_ms: float | None = None, redis_idle_cores: float = 0.0, headroom: float = HEADROOM) -> Sizing:
    """K workers and P partitions for a promotion of `leads_per_s`, from one worker's measured CPU
    per lead (and what it burns idle), its knee, and Redis's CPU per lead. Assumptions:
    - a worker is one Python process, so it uses one core at most; it is given a core of its own
      (on the 2-core development machine it shares them with the broker and Redis);
    - it is planned at `headroom` of that core, its idle use included: queueing delay, and so p99,
      climbs steeply as a core nears full;
    - and never above the knee measured here, the rate one worker held with p99 <= 100 ms;
    - workers add up linearly: each owns its partitions and decides its leads alone. What stops
      that is one Redis (redis_cores: each worker's idle load on it plus the leads'; above the
      headroom Redis is the limit, not the workers) or the brokers (not sized here: production
      runs Kafka, whose cost per record is not Tansu's);
    - partitions: at least 2 per worker and a multiple of the workers, so each worker has the same
      share and the group can double without adding partitions (which moves keys, so a customer's
      leads could be decided out of order across the move); never fewer than the default 4.
    """
    # Whole leads a second, and the float quotient's last bit must not cost a worker (499.99999...).
    per_worker = max(1, min(worker_knee, math.floor((headroom - worker_idle_cores) * 1000 / worker_cpu_ms + 1e-6)))
    workers = max(1, math.ceil(leads_per_s / per_worker))
    partitions = workers * math.ceil(max(PARTITIONS, 2 * workers) / workers)
    redis_cores = None if redis_cpu_ms is None else workers * redis_idle_cores + leads_per_s * redis_cpu_ms / 1000
    return Sizing(leads_per_s, workers, partitions, per_worker, redis_cores)


def sizing_inputs(found: dict) -> dict | None:
    """sizing()'s figures from the one-worker dispatcher's climb: the line through its held steps
    where it makes sense (a cost above zero, an idle use below the headroom), else the CPU per lead
    at the knee with nothing idle (which overstates the cost by the idle use over the knee)."""
    if not found.get("knee_per_s"):
        return None
    line, at_knee = found["cpu_line"] or {}, found["cpu_ms_per_lead_at_knee"]
    worker, redis = line.get("system"), line.get("redis")
    if worker and worker["idle_cores"] < HEADROOM:
        return {"basis": "line through the held steps", "worker_knee": found["knee_per_s"],
                "worker_cpu_ms": worker["ms_per_lead"], "worker_idle_cores": worker["idle_cores"],
                "redis_cpu_ms": redis["ms_per_lead"] if redis else at_knee.get("redis"),
                "redis_idle_cores": redis["idle_cores"] if redis else 0.0}
    if not at_knee.get("system"):
        return None
    return {"basis": "CPU per lead at the knee", "worker_knee": found["knee_per_s"],
            "worker_cpu_ms": at_knee["system"], "redis_cpu_ms": at_knee.get("redis")}


def summarize(rows: list[Row], ladder: Ladder, ratio_rows: Sequence[Row] = ()) -> dict:
    """Per system its knee, p99 and CPU per lead there, the line through its CPU, and the step
    that ended its ladder (refined steps included); the issue's two ratios, the p99 one from
    `ratio_rows` (RATIO_SYSTEMS at RATIO_RATE, round by round; RATIO_REFERENCE's beside it, with no
    target, when it ran them too); the sizing rule from the one-worker dispatcher."""
    systems: dict[str, dict] = {}
    for name in ladder.systems:
        held, ended = climb([row for row in rows if row.system == name], ladder.retries + 1)
        knee = held[-1] if held else None
        systems[name] = {
            "knee_per_s": rate_of(knee) if knee else None,
            "p99_ms_at_knee": knee.p99_ms if knee else None,
            "cpu_ms_per_lead_at_knee": cpu_ms_per_lead(knee.extra["cpu_s"], knee.sent) if knee else {},
            "cpu_line": cpu_line(held),
            # None: it held the ladder's top rate, so its knee is at least that.
            "ended_by": {"rate": rate_of(ended), "verdict": ended.extra["verdict"], "p99_ms": ended.p99_ms,
                         "matched": ended.matched, "sent": ended.sent} if ended else None,
        }
    out: dict = {"systems": systems, "ratios": [], "sizing": None}
    if {"dispatcher", "faust relay"} <= set(systems):
        out["ratios"].append(ratio_of_rounds(KNEE_RATIO, [systems["dispatcher"]["knee_per_s"]],
                                             [systems["faust relay"]["knee_per_s"]], ">=0.9x"))
    if ratio_rows:
        def p99s(name: str) -> list[float | None]:
            return [row.p99_ms for row in sorted(ratio_rows, key=lambda r: r.round) if row.system == name]

        mine, relay = RATIO_SYSTEMS
        out["ratios"].append(ratio_of_rounds(P99_RATIO, p99s(mine), p99s(relay), "<=1.5x"))
        if reference := p99s(RATIO_REFERENCE):
            out["ratios"].append(ratio_of_rounds(REFERENCE_RATIO, reference, p99s(relay), None))
    inputs = sizing_inputs(systems.get("dispatcher", {}))
    if inputs:
        basis = inputs.pop("basis")
        out["sizing"] = {"basis": basis, **inputs,
                         "rows": [asdict(sizing(rate, **inputs)) for rate in SIZING_RATES]}
    return out


async def run_knee(ladder: Ladder, *, workdir: Path | None = None, log=print) -> dict:  # type: ignore[no-untyped-def]
    """Every system's ladder on one fresh embedded stack; returns the summary (steps, knees,
    ratios, sizing). Logs of every process stay in `workdir` (a new temporary one by default)."""
    run_id = uuid.uuid4().hex[:6]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dispatcher-knee-"))
    plan = ladder.plan()
    began = time.perf_counter()
    cpu_before = cpu_seconds()
    rows: list[Row] = []
    ratio_rows: list[Row] = []
    with EmbeddedStack(workdir) as stack:
        log(f"knee {run_id}: broker {stack.broker_url}, redis {stack.redis_url}, logs in {workdir}")
        systems = systems_on(stack, workdir, {"DISPATCHER_DATA_DIR": str(workdir / "data")}, plan, Roster(run_id))
        stopping: list[asyncio.Future] = []
        # Names each try's topics: every try has fresh ones.
        tries_made = itertools.count()

        async def attempt(name: str, rate: int, try_: int) -> Row:
            row = await run_phase(systems[name], f"{rate}/s", f"k{run_id}-{next(tries_made):03d}", stack, plan, stopping)
            row.round = try_
            row.extra["verdict"] = verdict(row, ladder)
            log(f"  {name:<15} {rate:>5}/s try {try_}: {row.extra['verdict']:<8} matched "
                f"{row.matched}/{row.sent}, sent {row.send_rate:,.0f}/s (late {row.extra['pace_late_max_ms']} ms)"
                + (f", p99 {row.p99_ms:.1f} ms" if row.p99_ms is not None else ""))
            return row

        async def climb_together(steps: dict[str, list[int]]) -> None:
            """Each system up its own rates, all rate by rate, taking turns going first, until a
            step does not hold by most of its tries."""
            climbing = [name for name in ladder.systems if steps.get(name)]
            for n, rate in enumerate(sorted({rate for rates in steps.values() for rate in rates})):
                if not climbing:
                    break
                for name in rotated(tuple(climbing), n % len(climbing) + 1):
                    if rate not in steps[name]:
                        continue
                    attempts: list[Row] = []
                    while (holds := step_holds(attempts, ladder.retries + 1)) is None:
                        attempts.append(await attempt(name, rate, len(attempts) + 1))
                        rows.append(attempts[-1])
                    if not holds:
                        climbing.remove(name)

        try:
            await climb_together({name: list(ladder.rates) for name in ladder.systems})
            refining = {}
            for name in ladder.systems:
                held, ended = climb([row for row in rows if row.system == name], ladder.retries + 1)
                if ended is not None:
                    refining[name] = list(ladder.refined_rates(rate_of(held[-1]) if held else None, rate_of(ended)))
            await climb_together(refining)
            if ladder.measures_ratio:
                for round_ in range(1, ladder.ratio_rounds + 1):
                    for name in rotated(ladder.ratio_systems, (round_ - 1) % len(ladder.ratio_systems) + 1):
                        ratio_rows.append(await attempt(name, RATIO_RATE, round_))
        finally:
            await _all_stopped(stopping)
    wall = time.perf_counter() - began
    return {
        "ladder": asdict(ladder), "rows": [asdict(row) for row in rows],
        "ratio_rows": [asdict(row) for row in ratio_rows], **summarize(rows, ladder, ratio_rows),
        "records_written": sum(row.input_len + row.output_len for row in rows + ratio_rows), "seconds": round(wall, 1),
        "others_cpu_share": others_cpu_share(cpu_before, wall), "logs": str(workdir),
    }


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def sizing_lines(rows: Sequence[dict]) -> list[str]:
    """The sizing rule's answers (sizing(), as dicts), one line each."""
    lines = []
    for size in rows:
        redis = "" if size["redis_cores"] is None else (
            f"; Redis {size['redis_cores']:.2f} of a core" + (" -- Redis is the limit" if size["redis_cores"] > HEADROOM else ""))
        lines.append(f"    a promotion of {size['leads_per_s']:,} leads/s needs {size['workers']} worker(s) and "
                     f"{size['partitions']} partitions ({size['per_worker_per_s']:,.0f}/s a worker{redis})")
    return lines


def table(summary: dict) -> str:
    ladder = summary["ladder"]
    lines = [f"{'system':<15}{'rate':>6}{'try':>4}{'sent':>7}{'matched':>8}{'sent/s':>8}{'late ms':>8}"
             f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}  {'verdict':<8}"
             + "".join(f"{part:>8}" for part in PARTS) + f"{'waits':>7}"]
    lines.append("-" * len(lines[0]))
    ratio_rows = summary.get("ratio_rows") or []
    for row in summary["rows"] + ratio_rows:
        if ratio_rows and row is ratio_rows[0]:
            lines.append(f"the p99 ratio's rounds at {RATIO_RATE}/s (try = round):")
        cpu = cpu_ms_per_lead(row["extra"]["cpu_s"], row["sent"])
        lines.append(f"{row['system']:<15}{row['phase'].removesuffix('/s'):>6}{row['round']:>4}{row['sent']:>7}"
                     f"{row['matched']:>8}{row['send_rate']:>8.0f}{row['extra']['pace_late_max_ms']:>8.1f}"
                     + "".join(f"{_f(row[k]):>8}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
                     + f"  {row['extra']['verdict']:<8}" + "".join(f"{cpu[part]:>8.3f}" for part in PARTS)
                     + f"{row['extra']['waiting_s']['system'] / row['extra']['cpu_window_s']:>7.2f}")
    lines += ["", f"{'system':<15}{'knee/s':>8}{'p99 ms':>8}   {'CPU ms per lead at the knee':<32}  ladder ended by",
              f"{'':<34}" + "".join(f"{part:>8}" for part in PARTS)]
    for name, found in summary["systems"].items():
        cpu, ended = found["cpu_ms_per_lead_at_knee"], found["ended_by"]
        knee = _f(found["knee_per_s"], ",")
        why = ("nothing: held the top rate, the knee is at least that" if ended is None
               else f"{ended['rate']}/s {ended['verdict']} (matched {ended['matched']}/{ended['sent']}, "
                    f"p99 {_f(ended['p99_ms'])} ms)")
        lines.append(f"{name:<15}{knee:>8}{_f(found['p99_ms_at_knee']):>8}   "
                     + "".join(f"{_f(cpu.get(part), '.3f'):>8}" for part in PARTS) + f"  {why}")
    lines += ["", "CPU line through the held steps: cores busy = idle + rate x cost; idle cores + cost ms per lead",
              f"{'':<15}" + "".join(f"{part:>14}" for part in PARTS)]
    for name, found in summary["systems"].items():
        line = found["cpu_line"]
        cells = (["fewer than two held steps".rjust(14 * len(PARTS))] if line is None else
                 [("-" if line[part] is None else f"{line[part]['idle_cores']:.2f}+{line[part]['ms_per_lead']:.3f}").rjust(14)
                  for part in PARTS])
        lines.append(f"{name:<15}" + "".join(cells))
    lines.append("")
    for ratio in summary["ratios"]:
        met = {True: "met", False: "MISSED", None: "n/a"}[ratio["met"]]
        verdict_words = f"target {ratio['target']:<7} {met}" if ratio["target"] else "for reference, no target"
        lines.append(f"  {ratio['ratio']:<48}{_f(ratio['value'], '.2f'):>6}x   {verdict_words}")
    sized = summary["sizing"]
    if sized:
        idle = f", {sized['worker_idle_cores']:.2f} of a core idle" if "worker_idle_cores" in sized else ""
        lines += ["", f"  sizing (loadtest/knee.py sizing()): one worker {sized['worker_cpu_ms']:.3f} ms a lead{idle} "
                      f"({sized['basis']}), knee {sized['worker_knee']:,}/s;",
                  f"  each worker {HEADROOM:.0%} of a core of its own, never above the knee measured:"]
        lines += sizing_lines(sized["rows"])
    lines += [
        "",
        f"  a step: fresh topics and process, {ladder['warmup']} records of warm-up, {ladder['seconds']:g} s paced; held = every "
        f"record out within {ladder['settle_s']:g} s and p99 <= {ladder['p99_budget_ms']:g} ms;",
        f"  a step is tried up to {ladder['retries'] + 1} time(s) and holds when most tries hold (its figures: the try "
        "with the median p99 among those that held, or failed);",
        f"  unpaced = this side's producer sent below {PACE_SHARE:.0%} of the rate or fell more than "
        f"{ladder['p99_budget_ms']:g} ms behind (not the system's fault);",
        (f"  a ladder that ended is refined in {ladder['refine']}/s steps above its knee" if ladder["refine"]
         else "  ladders are not refined")
        + (f"; the p99 ratio is the median of its {ladder['ratio_rounds']} rounds." if ratio_rows else "."),
        "  late ms: how far the producer fell behind its schedule at worst; CPU columns: ms per lead of each part;",
        "  waits: share of a core the system's threads spent ready to run while no core was free (the machine held them up).",
        f"  All steps' topics together: {summary['records_written']:,} records on one broker.",
        others_note(summary["others_cpu_share"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Ladder()
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(default.systems))
    parser.add_argument("--start", type=int, default=default.start, help="the first step's rate, leads/s")
    parser.add_argument("--step", type=int, default=default.step, help="how much each step adds, leads/s")
    parser.add_argument("--top", type=int, default=default.top, help="the highest rate tried, leads/s")
    parser.add_argument("--seconds", type=float, default=default.seconds, help="paced seconds a step")
    parser.add_argument("--warmup", type=int, default=default.warmup, help="records before a step is measured")
    parser.add_argument("--settle-s", type=float, default=default.settle_s, help="wait for a step's last records")
    parser.add_argument("--retries", type=int, default=default.retries,
                        help="more tries of each step, which holds when most of its tries hold")
    parser.add_argument("--p99-ms", type=float, default=default.p99_budget_ms, help="the p99 a held step stays within")
    parser.add_argument("--refine", type=int, default=default.refine,
                        help="the finer steps above a knee, leads/s (0: none)")
    parser.add_argument("--ratio-rounds", type=int, default=default.ratio_rounds,
                        help=f"rounds of the {RATIO_RATE}/s step for the p99 ratio (0: none)")
    args = parser.parse_args(argv)
    ladder = Ladder(start=args.start, step=args.step, top=args.top, seconds=args.seconds, warmup=args.warmup,
                    settle_s=args.settle_s, retries=args.retries, p99_budget_ms=args.p99_ms, systems=tuple(args.systems),
                    refine=args.refine, ratio_rounds=args.ratio_rounds)
    summary = asyncio.run(run_knee(ladder))
    summary.update(when=time.strftime("%Y-%m-%d %H:%M:%S"),
                   machine={"cores": os.cpu_count(), "python": sys.version.split()[0]})
    report("knee", summary, table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
