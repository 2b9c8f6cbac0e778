"""Sticky holds and overflows through running workers: their due timers, not a test, move the lead,
and the assignment that comes of it is announced like any other."""

from __future__ import annotations

import re
from datetime import datetime

from tests.dispatcher.conftest import assigned, topic, with_status
from tests.kafka_io import eventually, read_topic

HOLD_S = 1.0
OVERFLOW_S = 1.0
POLL_S = 0.1
# Two workers on two shared cores: how late past its time a move may come.
SLACK_S = 1.5
ROUTING = f"""
queues:
  loyal: {{members: {{teams: [loyal]}}, sticky: {{field: customer_id, wait_s: {HOLD_S}}},
          overflow: {{after_s: {OVERFLOW_S}, to: wide}}}}
  wide: {{}}
rules:
  - {{when: {{attributes: {{source: loyal}}}}, queue: loyal}}
default_queue: wide
"""


async def test_a_held_lead_falls_back_then_overflows_through_the_timers(two_workers, stack):
    api, (_, second_worker) = await two_workers(ROUTING, POLL_S)
    await api.rep("ana", capacity=1, teams=["loyal"])
    await api.rep("bo", capacity=1)
    customer = {"customer_id": "c-7", "attributes": {"source": "loyal"}}
    assert (await api.call("POST", "/v1/leads", {"id": "first", **customer}))[0] == 202
    assert (await eventually(lambda: assigned(api, "first")))["rep_id"] == "ana"
    assert (await api.call("POST", "/v1/leads", {"id": "second", **customer}))[0] == 202
    held = await eventually(lambda: with_status(api, "second", "queued"))
    assert held["reason"].startswith("held in queue loyal for ana, its customer's last rep (customer_id=c-7), until ")

    lead = await eventually(lambda: assigned(api, "second"), timeout_s=HOLD_S + OVERFLOW_S + 10)
    assert (lead["rep_id"], lead["queue"]) == ("bo", "wide")
    events = {entry["event"]: entry for entry in lead["history"]}
    assert [e["event"] for e in lead["history"]] == ["accepted", "held", "hold_ended", "queued", "overflowed", "assigned"]
    hold_s = _seconds_between(events["held"]["at"], events["hold_ended"]["at"])
    waited_s = _seconds_between(events["queued"]["at"], events["overflowed"]["at"])
    assert HOLD_S <= hold_s <= HOLD_S + POLL_S + SLACK_S
    assert OVERFLOW_S <= waited_s <= OVERFLOW_S + POLL_S + SLACK_S
    assert lead["reason"].startswith("rule 1 sent it to queue loyal; nobody in queue loyal took it within ")
    assert re.search(r"so it overflowed to queue wide; returning customer \(customer_id=c-7\): its last rep ana was at "
                     r"capacity \(1 of 1\), held \d+\.\d s for it; load-aware", lead["reason"])
    announced = await read_topic(stack.broker_url, topic(second_worker, "assignments"),
                                 until=lambda records: any(r["lead_id"] == "second" for r in records))
    (event,) = [r for r in announced if r["lead_id"] == "second"]
    assert (event["rep_id"], event["reason"]) == ("bo", lead["reason"])


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
