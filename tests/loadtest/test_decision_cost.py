"""Smoke test of the decision-cost bench (loadtest/decision_cost.py): every case with tiny counts on
the session's redis; the figures exist, make sense, and come from the leads they claim. It checks
the bench works, not the dispatcher's speed (that is the bench's own table)."""

from __future__ import annotations

import math

from loadtest.decision_cost import Plan, run, table

TINY = Plan(reps=(10, 100), leads=300, waiting=(0, 100), queued_leads=100, drained_leads=50,
            batching_leads=200, batching_reps=10, batch=50, fill_batch=100, rounds=2)


async def test_decision_cost_figures_are_present_and_sane(stack, redis_client):
    summary = await run(TINY, stack.redis_url, log=lambda *_: None)

    cases = [(row["figure"], row["case"], row["leads"]) for row in summary["rows"]]
    assert cases == [
        ("reps in the queue", "10 reps", 300), ("reps in the queue", "100 reps", 300),
        ("new lead waits", "0 waiting", 100), ("new lead waits", "100 waiting", 100),
        ("drain", "0 waiting", 50), ("drain", "100 waiting", 50),
        ("batching", "batches of 50", 200), ("batching", "one by one", 200),
    ]
    for row in summary["rows"]:
        assert len(row["redis_samples"]) == len(row["wall_samples"]) == TINY.rounds, row
        figures = [row["redis_us"], row["wall_us"], row["leads_per_s"], *row["redis_samples"], *row["wall_samples"]]
        assert all(math.isfinite(figure) and figure > 0 for figure in figures), row
        # Python's view includes Redis's work on the same scripts.
        assert row["wall_us"] > row["redis_us"], row

    assert len(summary["ratios"]) == 7
    for ratio in summary["ratios"]:
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0, ratio
        expected_verdict = ratio["value"] <= 1.5 if ratio["target"] else None
        assert ratio["met"] is expected_verdict, ratio

    # Nothing the bench put in redis stays there.
    assert [key async for key in redis_client.scan_iter(match="*{decision-cost-*")] == []

    printed = table(summary)
    assert "reps in the queue: redis µs/lead max/min" in printed
    assert f"redis {summary['machine']['redis']}" in printed

