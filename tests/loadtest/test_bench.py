"""`make bench` (loadtest/bench.py): how ratios are taken over rounds. Its end-to-end run with tiny
counts is in test_smoke_runs.py, beside the other tools' runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loadtest.bench import Plan, Row, process_waiting_s, ratios


def test_a_ratio_is_the_median_of_its_rounds_and_lists_each():
    """One noisy round can neither pass nor fail a target alone (bench.ratios), without running the bench."""
    plan = Plan(rates=(1000,), rounds=3)

    def row(system: str, round_: int, p99_ms: float) -> Row:
        return Row(system, "1000/s", "fresh", 10, 10, 1000.0, p99_ms=p99_ms, round=round_)

    rows = [row("dispatcher", 1, 30.0), row("dispatcher", 2, 90.0), row("dispatcher", 3, 24.0),
            row("aiokafka relay", 1, 20.0), row("aiokafka relay", 2, 20.0), row("aiokafka relay", 3, 20.0)]
    (ratio,) = [r for r in ratios(rows, plan) if r["ratio"] == "dispatcher p99 / aiokafka relay p99 at 1000/s"]
    assert ratio["per_round"] == [1.5, 4.5, 1.2]
    assert ratio["value"] == 1.5 and ratio["met"] is True, "the 4.5x round alone does not fail the target"


def test_processes_that_outnumber_the_cores_are_seen_waiting_for_one():
    """CpuWatch's waits read the scheduler's run queue: more busy processes than cores must wait."""
    spin = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2 * (os.cpu_count() or 1) + 1)]
    try:
        pids = [process.pid for process in busy]
        before = process_waiting_s(pids)
        time.sleep(1.0)
        waited = process_waiting_s(pids) - before
    finally:
        for process in busy:
            process.wait()
    # Over 1 s, 2n+1 busy processes on n cores wait n+1 core-seconds between them; allow start-up slack.
    assert waited > 0.5, waited
    assert process_waiting_s([]) == 0.0
