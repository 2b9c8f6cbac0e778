"""`make loadtest`: locust headless plays a promotion for a bounded time against the dispatcher on
a fresh embedded stack; then the audit from Redis and the topics, and a summary. With
`--systems`, the same promotion is played against the bare relays too (loadtest/relays.py, each on
a fresh stack, fed by the Kafka lead users alone), so the dispatcher's latency stands beside
theirs at the same topic length: the embedded broker slows as topics grow (docs/stack-notes.md).

    python -m loadtest.run [--workers 1] [--api-processes 0] [--reps 50] [--baseline-users 8] [--hold-s 60] ...
    python -m loadtest.run --systems dispatcher "aiokafka relay" "faust relay"
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from dispatcher.embedded import ApiProcess, EmbeddedStack, WorkerProcess, free_port
from loadtest.audit import audit_redis, audit_topics, read_topics, wait_until_decided
from loadtest.bench import CpuWatch, Relay, create_topics
from loadtest.reporting import RESULTS

LATENCY_ROW = "lead produced -> assigned"
SYSTEMS = ("dispatcher", "aiokafka relay", "faust relay")
# A relay keeps no books to say it is done: it is once its output has stood still this long.
RELAY_QUIET_S = 15.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["dispatcher"],
                        help="what the promotion is played against, one after the other")
    parser.add_argument("--workers", type=int, default=1, help="dispatcher workers")
    parser.add_argument("--api-processes", type=int, default=0,
                        help="api processes (`dispatcher api`) beside the workers; the HTTP users then hit them, in turn")
    parser.add_argument("--reps", type=int, default=100)
    # Per channel: 100 reps x 5 channels x 1,000 is room for a whole promotion (about 200,000 leads)
    # before the reps close any. The peak is about intake; closes run far below it (each is one
    # HTTP call on this same machine).
    parser.add_argument("--rep-capacity", type=int, default=1000, help="each rep's capacity on each channel")
    parser.add_argument("--handle-time-s", type=float, default=5.0)
    parser.add_argument("--baseline-users", type=int, default=30)
    parser.add_argument("--leads-per-user-s", type=float, default=10.0)
    parser.add_argument("--baseline-s", type=float, default=20)
    parser.add_argument("--ramp-s", type=float, default=10)
    parser.add_argument("--hold-s", type=float, default=60)
    parser.add_argument("--cooldown-s", type=float, default=20)
    parser.add_argument("--settle-s", type=float, default=10, help="time after locust stops for the last leads")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report, CSVs and summary go")
    return parser.parse_args(argv)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def locust_figures(stats_csv: Path) -> dict[str, dict[str, float]]:
    with stats_csv.open() as handle:
        return {
            row["Name"]: {
                "requests": float(row["Request Count"]), "failures": float(row["Failure Count"]),
                "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]), "p99_ms": float(row["99%"]),
                "rps": float(row["Requests/s"]),
            }
            for row in csv.DictReader(handle)
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = {system: play_promotion(system, args, f"{stamp}-{system.replace(' ', '-')}") for system in args.systems}
    summary = {"when": stamp, "args": {**vars(args), "results": str(args.results)}, "runs": runs}
    (args.results / f"loadtest-{stamp}.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(runs, args)
    return 0 if all(run["clean"] for run in runs.values()) else 1


def play_promotion(system: str, args: argparse.Namespace, name: str) -> dict:
    """One promotion against one system on a fresh embedded stack; its audit and figures."""
    prefix, workspace = f"lt{uuid.uuid4().hex[:6]}.", f"lt{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-loadtest-"))
    with EmbeddedStack(workdir) as stack:
        bootstrap = stack.broker_url.removeprefix("kafka://")
        env = {
            **stack.worker_env,
            "DISPATCHER_TOPIC_PREFIX": prefix, "DISPATCHER_WORKSPACE": workspace,
            "DISPATCHER_ALLOW_ANONYMOUS": "1", "DISPATCHER_HTTP_BIND": "127.0.0.1",
        }
        processes = start_system(system, args, env, workdir, stack, prefix)
        try:
            locust_env = {
                **os.environ, **env,
                "LOADTEST_REPS": str(args.reps if system == "dispatcher" else 0),
                "LOADTEST_REP_CAPACITY": str(args.rep_capacity),
                "LOADTEST_HANDLE_TIME_S": str(args.handle_time_s),
                "LOADTEST_LEADS_PER_USER_S": str(args.leads_per_user_s),
                "LOADTEST_BASELINE_USERS": str(args.baseline_users), "LOADTEST_BASELINE_S": str(args.baseline_s),
                "LOADTEST_RAMP_S": str(args.ramp_s), "LOADTEST_HOLD_S": str(args.hold_s),
                "LOADTEST_COOLDOWN_S": str(args.cooldown_s),
                "LOADTEST_HOSTS": ",".join(f"http://127.0.0.1:{process.http_port}" for process in http_front(processes)),
            }
            total_s = args.baseline_s + args.ramp_s + args.hold_s + args.cooldown_s
            csv_prefix = args.results / f"loadtest-{name}"
            # A relay has no HTTP API and no reps: its leads all come from the Kafka users.
            users = (["--host", f"http://127.0.0.1:{processes[0].http_port}"] if system == "dispatcher"
                     else ["KafkaLeadUser"])
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
                 "--csv", str(csv_prefix), "--html", f"{csv_prefix}.html", "--run-time", f"{int(total_s + 30)}s",
                 "--stop-timeout", "5", "--loglevel", "WARNING", *users],
                env=locust_env,
            )
            # Where the two cores went while locust ran: the figures mean little without it.
            apis = [process for process in processes if isinstance(process, ApiProcess)]
            cpu = CpuWatch({
                "system": [pid for process in processes if process not in apis for pid in pids_of(process)],
                **({"api": [pid for process in apis for pid in pids_of(process)]} if apis else {}),
                "broker": [stack._broker.pid] if stack._broker else [],
                "redis": [stack._redis.pid] if stack._redis else [],
            }).start()
            reaped_before = children_cpu_s()
            try:
                locust.wait(timeout=total_s + 120)
            finally:
                wall_s = time.perf_counter() - cpu.began
                cores_busy = cpu.stop()
                locust.kill()
                stopped_ms = time.time() * 1000
            # locust is the only child reaped meanwhile, so its CPU is what the reaped children gained.
            cores_busy["locust"] = round((children_cpu_s() - reaped_before) / wall_s, 2)
            time.sleep(args.settle_s)
            topics = [prefix + "leads", prefix + "assignments"]
            if system == "dispatcher":
                asyncio.run(wait_until_decided(stack.redis_url, workspace))
                result = audit_topics(asyncio.run(read_topics(bootstrap, topics)), prefix)
                result = asyncio.run(audit_redis(result, stack.redis_url, workspace))
            else:
                result = audit_topics(asyncio.run(read_topics(bootstrap, topics, quiet_s=RELAY_QUIET_S)), prefix)
        finally:
            for process in processes:
                process.terminate()
    return {"audit": asdict(result) | {"lost": len(result.lost)}, "clean": result.clean,
            "locust": locust_figures(Path(f"{csv_prefix}_stats.csv")), "cores_busy": cores_busy,
            "caught_up_s": round(max(0.0, result.last_assigned_ms - stopped_ms) / 1000, 1)}


def start_system(system: str, args: argparse.Namespace, env: dict[str, str], workdir: Path, stack: EmbeddedStack,
                 prefix: str) -> list[WorkerProcess] | list[Relay]:
    """The system under test, started: dispatcher workers (which declare the topics themselves) and
    api processes, or a bare relay on topics made here the way the workers make them."""
    if system == "dispatcher":
        workers = [WorkerProcess({**env, "DISPATCHER_WORKER_ID": f"w{n}"}, free_port(), workdir / f"worker{n}.log")
                   for n in range(args.workers)]
        workers += [ApiProcess({**env, "DISPATCHER_WORKER_ID": f"a{n}"}, free_port(), workdir / f"api{n}.log")
                    for n in range(args.api_processes)]
        for worker in workers:
            worker.start()
        return workers
    names = [prefix + "leads", prefix + "assignments"]
    asyncio.run(create_topics(stack.broker_url.removeprefix("kafka://"), names))
    relay = Relay(system.removesuffix(" relay"), stack, workdir, {"DISPATCHER_DATA_DIR": str(workdir / "data")})
    asyncio.run(relay.start(*names, timeout_s=60))
    return [relay]


def http_front(processes: list[WorkerProcess] | list[Relay]) -> list[WorkerProcess]:
    """Where the HTTP users go: the api processes when there are any (the split), else the workers."""
    served = [process for process in processes if isinstance(process, WorkerProcess)]
    return [process for process in served if isinstance(process, ApiProcess)] or served


def pids_of(process: WorkerProcess | Relay) -> list[int]:
    return process.pids if isinstance(process, Relay) else [process.process.pid] if process.process else []


def print_summary(runs: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"\nload test: a promotion of {args.baseline_users} -> {args.baseline_users * 10} lead users x "
          f"{args.leads_per_user_s}/s, the peak held {args.hold_s:.0f} s; the dispatcher with {args.workers} "
          f"worker(s), {args.api_processes} api process(es) and {args.reps} reps x capacity {args.rep_capacity} per channel")
    print("  latency: a lead record's timestamp to its first assignment event's, both set by their producers\n")
    header = ("system", "leads", "peak in/s", "peak out/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
              "caught up s", "lost", "doubled", "over capacity")
    rows = []
    for system, run in runs.items():
        audit, latency = run["audit"], run["audit"]["latency_ms"]
        mine = system == "dispatcher"  # assigned twice and over capacity mean nothing for a relay
        rows.append((system, f"{audit['produced']:,}", f"{audit['peak_produced_per_s']:,.0f}",
                     f"{audit['peak_assigned_per_s']:,.0f}",
                     *(f"{latency.get(name, float('nan')):,.0f}" for name in ("p50", "p95", "p99", "max")),
                     f"{run['caught_up_s']:.0f}", f"{audit['lost']:,}",
                     f"{len(audit['doubled']):,}" if mine else "-", f"{len(audit['over_capacity']):,}" if mine else "-"))
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(cell.ljust(width) if n == 0 else cell.rjust(width)
                               for n, (cell, width) in enumerate(zip(row, widths))))
    print()
    for system, run in runs.items():
        print(f"  {system}: cores busy while locust ran   "
              + "   ".join(f"{name} {share:.2f}" for name, share in run["cores_busy"].items()) + f"   (of {os.cpu_count()})")
        print(f"    topic lengths {run['audit']['topic_lengths']}; caught up: the last assignment event, after locust stopped")
        if system == "dispatcher":
            http, watched = run["locust"].get("POST /v1/leads", {}), run["locust"].get(LATENCY_ROW, {})
            print(f"    by status {run['audit']['by_status']}; load != open leads {len(run['audit']['load_mismatch'])}")
            print(f"    POST /v1/leads p50 {http.get('p50_ms', 0):.0f} ms, p99 {http.get('p99_ms', 0):.0f} ms "
                  f"({http.get('requests', 0):,.0f} requests, {http.get('failures', 0):,.0f} failed); locust's watcher "
                  f"saw {watched.get('requests', 0):,.0f} Kafka leads assigned, p99 {watched.get('p99_ms', 0):.0f} ms")
    print(f"  results in {args.results}")


if __name__ == "__main__":
    sys.exit(main())
