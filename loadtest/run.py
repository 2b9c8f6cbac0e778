"""`make loadtest`: the embedded stack, dispatcher worker(s), and locust headless playing a
promotion for a bounded time; then the audit from Redis and the topics, and a summary.

    python -m loadtest.run [--workers 1] [--reps 50] [--baseline-users 8] [--hold-s 60] ...
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

from dispatcher.embedded import EmbeddedStack, WorkerProcess, free_port
from loadtest.audit import TopicTail, audit, wait_until_decided
from loadtest.bench import CpuWatch
from loadtest.reporting import RESULTS

LATENCY_ROW = "lead produced -> assigned"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
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
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix, workspace = f"lt{uuid.uuid4().hex[:6]}.", f"lt{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-loadtest-"))
    with EmbeddedStack(workdir) as stack:
        env = {
            "DISPATCHER_BROKER": stack.broker_url, "DISPATCHER_REDIS_URL": stack.redis_url,
            "DISPATCHER_TOPIC_PREFIX": prefix, "DISPATCHER_WORKSPACE": workspace,
            "DISPATCHER_ALLOW_ANONYMOUS": "1", "DISPATCHER_HTTP_HOST": "127.0.0.1",
        }
        workers = [WorkerProcess({**env, "DISPATCHER_WORKER_ID": f"w{n}"}, free_port(), workdir / f"worker{n}.log")
                   for n in range(args.workers)]
        try:
            for worker in workers:
                worker.start()
            # Followed from the start, not read afterwards (see TopicTail); the workers declared them.
            tail = TopicTail(stack.broker_url.removeprefix("kafka://"), [prefix + "leads", prefix + "assignments"]).start()
            locust_env = {
                **os.environ, **env,
                "LOADTEST_REPS": str(args.reps), "LOADTEST_REP_CAPACITY": str(args.rep_capacity),
                "LOADTEST_HANDLE_TIME_S": str(args.handle_time_s),
                "LOADTEST_LEADS_PER_USER_S": str(args.leads_per_user_s),
                "LOADTEST_BASELINE_USERS": str(args.baseline_users), "LOADTEST_BASELINE_S": str(args.baseline_s),
                "LOADTEST_RAMP_S": str(args.ramp_s), "LOADTEST_HOLD_S": str(args.hold_s),
                "LOADTEST_COOLDOWN_S": str(args.cooldown_s),
            }
            total_s = args.baseline_s + args.ramp_s + args.hold_s + args.cooldown_s
            csv_prefix = results / f"loadtest-{stamp}"
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
                 "--host", f"http://127.0.0.1:{workers[0].http_port}", "--csv", str(csv_prefix),
                 "--html", str(results / f"loadtest-{stamp}.html"), "--run-time", f"{int(total_s + 30)}s",
                 "--stop-timeout", "5", "--loglevel", "WARNING"],
                env=locust_env,
            )
            # Where the two cores went while locust ran: the figures mean little without it.
            cpu = CpuWatch({
                "workers": [worker.process.pid for worker in workers if worker.process],
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
            # locust is the only child reaped meanwhile, so its CPU is what the reaped children gained.
            cores_busy["locust"] = round((children_cpu_s() - reaped_before) / wall_s, 2)
            time.sleep(args.settle_s)
            catch_up_s = asyncio.run(wait_until_decided(stack.redis_url, workspace))
            result = asyncio.run(audit(tail.finish(), stack.redis_url, workspace, prefix))
        finally:
            for worker in workers:
                worker.terminate()
    figures = locust_figures(Path(f"{csv_prefix}_stats.csv"))
    summary = {"when": stamp, "args": {**vars(args), "results": str(results)}, "audit": asdict(result),
               "locust": figures, "cores_busy": cores_busy, "catch_up_s": round(catch_up_s + args.settle_s, 1)}
    summary["audit"]["lost"] = len(result.lost)
    (results / f"loadtest-{stamp}.json").write_text(json.dumps(summary, indent=2))
    print_summary(result, figures, cores_busy, summary["catch_up_s"], args)
    return 0 if result.clean else 1


def print_summary(result, figures: dict[str, dict[str, float]], cores_busy: dict[str, float], catch_up_s: float,
                  args: argparse.Namespace) -> None:
    latency = figures.get(LATENCY_ROW, {})
    print(f"\nload test: {args.workers} worker(s), {args.reps} reps x capacity {args.rep_capacity}, "
          f"peak {args.baseline_users * 10} lead users x {args.leads_per_user_s}/s for {args.hold_s:.0f} s")
    print(f"  peak leads/s (10 s window)   produced {result.peak_produced_per_s:,.0f}   "
          f"assigned {result.peak_assigned_per_s:,.0f}")
    print(f"  produced -> assigned (kafka)  p50 {latency.get('p50_ms', 0):.0f} ms   "
          f"p95 {latency.get('p95_ms', 0):.0f} ms   p99 {latency.get('p99_ms', 0):.0f} ms   "
          f"({latency.get('requests', 0):,.0f} leads)")
    http = figures.get("POST /v1/leads", {})
    print(f"  POST /v1/leads               p50 {http.get('p50_ms', 0):.0f} ms   p99 {http.get('p99_ms', 0):.0f} ms   "
          f"({http.get('requests', 0):,.0f} requests, {http.get('failures', 0):,.0f} failed)")
    print(f"  leads produced {result.produced:,}; by status {result.by_status}")
    print(f"  every lead decided {catch_up_s:.0f} s after locust stopped (the backlog the load left)")
    print(f"  topic lengths reached {result.topic_lengths}")
    print(f"  leads lost {len(result.lost)}   assigned twice {len(result.doubled)}   "
          f"reps over capacity {len(result.over_capacity)}   load != open leads {len(result.load_mismatch)}")
    print("  cores busy while locust ran   " + "   ".join(f"{name} {share:.2f}" for name, share in cores_busy.items())
          + f"   (of {os.cpu_count()})")
    print(f"  results in {args.results}")


if __name__ == "__main__":
    sys.exit(main())
