"""Offers through a running worker, over HTTP: a lead is offered, a rejection offers it to the
other rep, an accept makes it that rep's assignment and announces it on `assignments`, and an
offer nobody answers runs out by the worker's due timer and goes to someone else."""

from __future__ import annotations

from tests.dispatcher.conftest import topic, with_status
from tests.kafka_io import eventually, read_topic

OFFER_S = 1.0
ROUTING = f"""
queues:
  general: {{offer: {{accept_timeout_s: {OFFER_S}}}}}
"""


async def test_offers_are_accepted_rejected_and_run_out_over_http(worker_factory, api_factory, stack, tmp_path):
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    worker = worker_factory(DISPATCHER_ROUTING=str(routing), DISPATCHER_DUE_POLL_S="0.1")
    api = await api_factory(worker)
    await api.rep("ana", capacity=1)
    await api.rep("bo", capacity=1)
    assert (await api.call("POST", "/v1/leads", {"id": "l1"}))[0] == 202
    first = await eventually(lambda: with_status(api, "l1", "offered"))
    assert first["reason"].startswith(f"offered to {first['rep_id']} until ")
    other = "bo" if first["rep_id"] == "ana" else "ana"

    code, lead = await api.call("POST", "/v1/leads/l1/reject")
    assert (code, lead["status"], lead["rep_id"]) == (200, "offered", other)
    code, lead = await api.call("POST", "/v1/leads/l1/accept")
    assert (code, lead["status"], lead["rep_id"]) == (200, "assigned", other)
    assert [e["event"] for e in lead["history"]] == ["accepted", "offered", "rejected", "offered", "accepted"]
    code, body = await api.call("POST", "/v1/leads/l1/accept")
    assert (code, body["error"]) == (409, "lead l1 is assigned, not offered")
    announced = await read_topic(stack.broker_url, topic(worker, "assignments"),
                                 until=lambda records: any(r["lead_id"] == "l1" for r in records))
    assert [(r["rep_id"], r["reassigned"]) for r in announced if r["lead_id"] == "l1"] == [(other, False)]

    # The rep that rejected has room and is offered the next lead; it does not answer, the other
    # rep's unit comes free meanwhile, and the worker's timer moves the offer there.
    assert (await api.call("POST", "/v1/leads", {"id": "l2"}))[0] == 202
    assert (await eventually(lambda: with_status(api, "l2", "offered")))["rep_id"] == first["rep_id"]
    await api.call("POST", "/v1/leads/l1/close", {"outcome": "won"})
    moved = await eventually(lambda: _offered_to(api, "l2", other), timeout_s=OFFER_S + 10)
    assert [e["event"] for e in moved["history"]][-2:] == ["offer_timed_out", "offered"]
    code, lead = await api.call("POST", "/v1/leads/l2/accept")
    assert (code, lead["status"], lead["rep_id"]) == (200, "assigned", other)


async def _offered_to(api, lead_id: str, rep_id: str):
    lead = await with_status(api, lead_id, "offered")
    return lead if lead and lead["rep_id"] == rep_id else None
