"""`make loadtest` end to end with a tiny promotion: its own embedded stack, a worker, locust
headless (HTTP, Kafka and rep users), then the audit from Redis and the topics. Checks the run
works and its proof is sound, not how fast it is (that is `make loadtest`'s summary)."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.shapes import PEAK_FACTOR, promotion_stages


def test_the_promotion_shape_ramps_to_ten_times_and_back():
    stages = promotion_stages(baseline_users=3, baseline_s=10, ramp_s=5, hold_s=60, cooldown_s=10)
    assert [stage.users for stage in stages] == [3, 3 * PEAK_FACTOR, 3 * PEAK_FACTOR, 3]
    assert [stage.until_s for stage in stages] == [10, 15, 75, 85]
    assert stages[1].spawn_rate * 5 >= 3 * PEAK_FACTOR - 3, "the peak is reached within the ramp"


TINY_PROMOTION = ["--reps", "5", "--rep-capacity", "200", "--handle-time-s", "1", "--baseline-users", "1",
                  "--leads-per-user-s", "5", "--baseline-s", "3", "--ramp-s", "2", "--hold-s", "4",
                  "--cooldown-s", "2", "--settle-s", "3"]


def play(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    run = subprocess.run([sys.executable, "-m", "loadtest.run", "--results", str(tmp_path), *TINY_PROMOTION, *extra],
                         capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (summary_path,) = tmp_path.glob("loadtest-*.json")
    return run, json.loads(summary_path.read_text())["runs"]


def test_a_short_promotion_on_two_workers_and_an_api_process_loses_and_doubles_nothing(tmp_path):
    # The HTTP users (lead forms, reps' presence and closes) go to the api process, the Kafka users
    # to the broker: the split the issue asks to measure, covered at no extra run.
    run, runs = play(tmp_path, "--workers", "2", "--api-processes", "1")
    assert list(runs) == ["dispatcher"]
    summary = runs["dispatcher"]
    audit = summary["audit"]
    assert audit["produced"] > 20, audit
    assert audit["lost"] == 0 and audit["doubled"] == {} and audit["over_capacity"] == {}, audit
    assert audit["load_mismatch"] == {}, audit
    assert audit["topic_lengths"]["leads"] >= audit["produced"]
    ever_assigned = audit["by_status"].get("assigned", 0) + audit["by_status"].get("closed", 0)
    assert audit["assigned"] == ever_assigned > 0, audit
    assert sum(audit["by_status"].values()) == audit["produced"]
    assert 0 < audit["latency_ms"]["p50"] <= audit["latency_ms"]["p99"] <= audit["latency_ms"]["max"]
    assert summary["locust"]["lead produced -> assigned"]["requests"] > 0
    assert set(summary["cores_busy"]) == {"system", "api", "broker", "redis", "locust"}
    assert summary["cores_busy"]["api"] > 0, "the api process served the HTTP users"
    assert list(tmp_path.glob("loadtest-*.html")), "the locust HTML report is written"
    (row,) = [line.split() for line in run.stdout.splitlines() if line.strip().startswith("dispatcher ")]
    assert row[-3:] == ["0", "0", "0"], run.stdout  # lost, assigned twice, over capacity

