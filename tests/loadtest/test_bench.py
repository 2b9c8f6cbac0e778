"""Smoke test of `make bench` (loadtest/bench.py): the whole path on a fresh embedded stack with
tiny counts, every system and every kind of phase; the figures exist and make sense. It checks the
bench works, not the dispatcher's speed (that is `make bench`'s table)."""

from __future__ import annotations

import math

from loadtest.bench import Plan, Row, is_paced, ratios, run_bench, schedule, table

# Every kind of row, every phase, the dispatcher variants; one round (each round starts every
# system again, and a second one doubled the test's minutes without reaching new code).
TINY = Plan(rates=(1000,), seconds=0.5, warmup=20, burst=1000, reps=10, capacity=1000, settle_s=15.0, rounds=1)


async def test_bench_figures_are_present_and_sane(tmp_path):
    summary = await run_bench(TINY, workdir=tmp_path, log=lambda *_: None)

    rows = {(row["system"], row["phase"], row["round"]): row for row in summary["rows"]}
    assert list(rows) == schedule(TINY)
    for (system, phase, _), row in rows.items():
        where = f"{system}, {phase}"
        assert row["sent"] > 0 and row["matched"] == row["sent"], f"{where}: not every lead came out: {row}"
        assert row["topics"] == "fresh"
        assert row["send_rate"] > 0, where
        assert row["input_len"] >= row["sent"] and row["output_len"] >= row["matched"], where
        if is_paced(phase):
            figures = [row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"]]
            assert all(value is not None and value > 0 for value in figures), f"{where}: {figures}"
            assert figures == sorted(figures), f"{where}: percentiles out of order: {figures}"
        else:
            assert row["throughput"] is not None and row["throughput"] > 0, where
            assert row["p99_ms"] is None

    names = [ratio["ratio"] for ratio in summary["ratios"]]
    assert any("aiokafka relay p99" in name for name in names)
    assert any("faust relay p99" in name for name in names)
    assert any("throughput" in name for name in names)
    for ratio in summary["ratios"]:
        assert ratio["value"] is not None and math.isfinite(ratio["value"]) and ratio["value"] > 0, ratio
        assert isinstance(ratio["met"], bool) if ratio["target"] else ratio["met"] is None, ratio
        # Rounds are listed only when there are several; the median over them is bench.py's, tested by the full run.
        assert ratio["per_round"] is None, ratio
    assert {"dispatcher x2 / dispatcher throughput, burst (idle)",
            "dispatcher unbatched / dispatcher throughput, burst (idle)"} <= set(names)

    printed = table(summary)
    assert "dispatcher p99 / faust relay p99 at 1000/s" in printed
    assert "dispatcher / faust relay throughput" in printed


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
