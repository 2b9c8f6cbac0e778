"""The claim pool and the first-contact SLA through running workers: a lead reaches the pool, two
reps claim it over HTTP and one wins; a lead nobody contacts is breached by the workers' due timers
once, however many workers run them, and moves on to another rep; a deadline that passes while no
worker runs is breached, once, by the worker started after it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.dispatcher.conftest import assigned, topic, with_status
from tests.kafka_io import eventually, read_topic

SLA_S = 1.0
POLL_S = 0.1
ROUTING = f"""
queues:
  open: {{strategy: pool, members: {{teams: [open]}}}}
  timed: {{members: {{teams: [timed]}}, sla: {{first_contact_s: {SLA_S}, on_breach: reroute}}}}
rules:
  - {{when: {{attributes: {{q: open}}}}, queue: open}}
default_queue: timed
"""


async def test_pool_claims_and_an_sla_breach_through_two_workers(two_workers, stack):
    api, (_, second_worker) = await two_workers(ROUTING, POLL_S)
    await api.rep("ana", capacity=1, teams=["open", "timed"])
    await api.rep("bo", capacity=1, teams=["open"])

    assert (await api.call("POST", "/v1/leads", {"id": "p", "attributes": {"q": "open"}}))[0] == 202
    await eventually(lambda: with_status(api, "p", "pooled"))
    status, listed = await api.call("GET", "/v1/pool?queue=open")
    assert status == 200 and [lead["id"] for lead in listed["leads"]] == ["p"]
    claims = await asyncio.gather(*(api.call("POST", "/v1/pool/p/claim", {"rep_id": rep}) for rep in ("ana", "bo")))
    assert sorted(status for status, _ in claims) == [200, 409]
    (winner,) = [body for status, body in claims if status == 200]
    assert f"claimed from the pool of queue open by rep {winner['rep_id']}, pooled " in winner["reason"]
    announced = await read_topic(stack.broker_url, topic(second_worker, "assignments"),
                                 until=lambda records: any(r["lead_id"] == "p" for r in records))
    assert [r["rep_id"] for r in announced if r["lead_id"] == "p"] == [winner["rep_id"]]

    # ana takes a lead in the SLA queue (bo is no member yet), does not contact it, and loses it to carl.
    if winner["rep_id"] == "ana":
        assert (await api.call("POST", "/v1/leads/p/close", {"outcome": "won"}))[0] == 200
    assert (await api.call("POST", "/v1/leads", {"id": "s"}))[0] == 202
    assert (await eventually(lambda: assigned(api, "s")))["rep_id"] == "ana"
    await api.rep("carl", capacity=1, teams=["timed"])

    async def with_carl():
        lead = await assigned(api, "s")
        return lead if lead and lead["rep_id"] == "carl" else None

    lead = await eventually(with_carl, timeout_s=SLA_S + 10)
    events = [entry["event"] for entry in lead["history"]]
    assert events.count("sla_breached") == 1
    assert "re-routed away from ana" in lead["reason"]
    breaches = await read_topic(stack.broker_url, topic(second_worker, "lead-events"),
                                until=lambda records: any(r.get("event") == "sla_breached" for r in records))
    assert [(r["lead_id"], r["rep_id"]) for r in breaches if r.get("event") == "sla_breached"] == [("s", "ana")]
    # Contact stops carl's clock.
    assert (await api.call("POST", "/v1/leads/s/contact"))[0] == 200



def _at(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["at"])


async def test_an_sla_breach_falls_due_while_no_worker_runs_and_fires_once_after_a_restart(
        worker_factory, api_factory, tmp_path):
    sla_s = 2.0  # room for the kill to come before the deadline on a busy machine
    routing = tmp_path / "routing.yaml"
    routing.write_text(f"queues: {{timed: {{sla: {{first_contact_s: {sla_s}, on_breach: pool}}}}}}\n"
                       "default_queue: timed\n")
    settings = {"DISPATCHER_ROUTING": str(routing), "DISPATCHER_DUE_POLL_S": str(POLL_S)}
    crashed = worker_factory(**settings)
    api = await api_factory(crashed)
    await api.rep("ana", capacity=1)
    assert (await api.call("POST", "/v1/leads", {"id": "s"}))[0] == 202
    lead = await eventually(lambda: assigned(api, "s"))
    crashed.kill()
    killed_at = datetime.now(UTC)
    deadline = _at(lead["history"][-1]) + timedelta(seconds=sla_s)
    assert lead["history"][-1]["event"] == "assigned" and killed_at < deadline

    # The deadline passes with no worker; the one started after it finds the breach in Redis.
    await asyncio.sleep((deadline - killed_at).total_seconds())
    api = await api_factory(worker_factory(**settings))
    await eventually(lambda: with_status(api, "s", "pooled"), timeout_s=10)
    await asyncio.sleep(10 * POLL_S)  # timer rounds enough to fire it again, were the step not once-only
    lead = await api.lead_status("s")
    breaches = [e for e in lead["history"] if e["event"] == "sla_breached"]
    assert lead["status"] == "pooled" and len(breaches) == 1
    assert breaches[0]["rep_id"] == "ana" and _at(breaches[0]) > killed_at
