"""Smoke test of the memory bench (loadtest/memory.py): every step with a small roster on a redis of
its own (the bench reads the whole server's used_memory, so it must be the only client). The
figures exist, make sense, and come from the leads they claim; the bench's own table gives the
sizes."""

from __future__ import annotations

import redis.asyncio as aioredis

from dispatcher.embedded import EmbeddedStack
from loadtest.memory import GROUPS, Plan, run, table

SMALL = Plan(reps=20, leads_per_rep=10, batch=50)
N = SMALL.leads


async def test_memory_figures_are_present_and_sane(tmp_path):
    with EmbeddedStack(tmp_path, with_broker=False) as stack:
        summary = await run(SMALL, stack.redis_url, log=lambda *_: None)
        client = aioredis.Redis.from_url(stack.redis_url)
        try:
            left = await client.dbsize()
        finally:
            await client.aclose()

    steps = {step["name"]: step for step in summary["steps"]}
    assert list(steps) == ["assigned", "closed", "assigned beside closed", "queued", "expired"]
    assert all(step["leads"] == N for step in steps.values())
    # Three events per close (its history entry and the closed record on lead-events, rep-events); a
    # decision announces itself, its history entries too; a waiting lead has none.
    assert [step["outbox_events"] for step in steps.values()] == [0, 3 * N, 0, 0, 0], "decisions announce themselves"
    assert steps["closed"]["bytes_per_event"] > 0

    per_lead = summary["per_lead"]
    assert all(per_lead[kind] > 0 for kind in ("assigned", "assigned beside closed", "queued", "closed")), per_lead
    assert per_lead["given back by expiry"] > 0, per_lead
    # Expiry gives back what the closed leads held, and leaves the open ones in place.
    assert steps["expired"]["used_after"] < steps["queued"]["used_after"]
    assert steps["expired"]["used_after"] > summary["roster_used_memory"]

    changes = {name: step["key_changes"] for name, step in steps.items()}
    assert set(changes["assigned"]) == set(GROUPS)
    assert changes["closed"]["open set"] == -changes["assigned"]["open set"] < 0
    assert changes["expired"]["closed set"] == -changes["closed"]["closed set"] < 0
    assert changes["queued"]["wait sets"] > 0 and changes["queued"]["wait indexes"] > 0
    assert changes["queued"]["open set"] == changes["queued"]["closed set"] == 0
    assert changes["expired"]["lead records"] < 0
    assert changes["expired"]["wait sets"] == changes["expired"]["open set"] == 0

    # A record holds the lead and what was decided; a closed one adds its close to that.
    records = summary["record_bytes"]
    assert records["closed"] > records["assigned"] > records["queued"] > summary["lead_json_bytes"] > 200, records

    retention = summary["retention"]
    assert retention["closed_leads_held"] == 7 * 100_000
    assert retention["bytes"] == retention["closed_leads_held"] * per_lead["closed"]

    assert left == 0, "the bench left keys behind"

    printed = table(summary)
    for line in ("per open assigned lead", "per queued lead", "per closed lead", "given back per expired lead",
                 "per outbox event", "700,000 closed leads"):
        assert line in printed
    assert f"redis {summary['machine']['redis']}" in printed
