"""Smoke test of `make bench` (loadtest/bench.py): the whole path on a fresh embedded stack with
tiny counts, every system and every kind of phase; the figures exist and make sense. It checks the
bench works, not the dispatcher's speed (that is `make bench`'s table)."""

from __future__ import annotations

import math

from loadtest.bench import SYSTEMS, Plan, phases_of, run_bench, table

# Every kind of row but the idle burst, whose parts (warm-up, flat-out production) the others use.
TINY = Plan(rates=(1000,), seconds=0.5, warmup=20, burst=1000, idle_burst=False, reps=10, capacity=300, settle_s=15.0)


async def test_bench_figures_are_present_and_sane(tmp_path):
    summary = await run_bench(TINY, workdir=tmp_path, log=lambda *_: None)

    rows = {(row["system"], row["phase"]): row for row in summary["rows"]}
    assert set(rows) == {(system, phase) for system in SYSTEMS for phase in phases_of(TINY)}
    for (system, phase), row in rows.items():
        where = f"{system}, {phase}"
        assert row["sent"] > 0 and row["matched"] == row["sent"], f"{where}: not every lead came out: {row}"
        assert row["topics"] == "fresh"
        assert row["send_rate"] > 0, where
        assert row["input_len"] >= row["sent"] and row["output_len"] >= row["matched"], where
        if phase.endswith("/s"):
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
        assert isinstance(ratio["met"], bool)

    printed = table(summary)
    assert "dispatcher p99 / faust relay p99 at 1000/s" in printed
    assert "dispatcher / faust relay throughput" in printed
