"""Rep schedules through a running worker: a bad schedule is refused in words and changes nothing;
an off-shift rep's lead waits, and the worker's shift timer hands it over at the boundary."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.dispatcher.conftest import assigned, with_status
from tests.kafka_io import eventually

OFF_S = 3.0


def iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="milliseconds")


async def test_the_shift_timer_hands_a_waiting_lead_to_a_rep_whose_shift_starts(worker_factory, api_factory):
    api = await api_factory(worker_factory(DISPATCHER_DUE_POLL_S="0.1"))
    await api.rep("ana", capacity=1)
    code, before = await api.call("GET", "/v1/reps/ana")
    assert (code, before["on_shift"], before["shift_changes_at"]) == (200, True, None)
    code, refused = await api.call("PUT", "/v1/reps/ana", {"capacity": 1, "schedule": {
        "timezone": "Europe/Berlin", "hours": {"mon": ["09:00-13:00", "12:00-17:00"]}}})
    assert (code, refused["error"]) == (400, "invalid rep profile: schedule.hours.mon: windows 09:00-13:00 and "
                                             "12:00-17:00 overlap")
    assert (await api.call("GET", "/v1/reps/ana"))[1] == before, "nothing changed"

    ends = time.time() + OFF_S
    schedule = {"absences": [{"from": iso(ends - 3600), "to": iso(ends)}]}
    await api.rep("ana", capacity=1, schedule=schedule)
    code, rep = await api.call("GET", "/v1/reps/ana")
    assert (rep["on_shift"], rep["schedule"], rep["status"]) == (False, schedule, "online")
    assert (await api.call("POST", "/v1/leads", {"id": "w"}))[0] == 202
    await eventually(lambda: with_status(api, "w", "queued"))
    assert await eventually(lambda: on_shift_in_live_sample(api, 0)) == [False]
    lead = await eventually(lambda: assigned(api, "w"), timeout_s=OFF_S + 10)
    assert lead["rep_id"] == "ana"
    assert time.time() >= ends - 0.05, "not before its shift"
    assert (await api.call("GET", "/v1/reps/ana"))[1]["on_shift"] is True
    assert await eventually(lambda: on_shift_in_live_sample(api, 1)) == [True]


async def on_shift_in_live_sample(api, reps_on_shift: int) -> list[bool] | None:
    """The live picture's reps' on_shift once it and the gauge count `reps_on_shift`, else None."""
    async with api.session.get(api.base + "/metrics") as response:
        exported = (await response.read()).decode()
    picture = (await api.call("GET", "/v1/live"))[1]
    if f"dispatcher_reps_on_shift {float(reps_on_shift)}" in exported and picture["reps_on_shift"] == reps_on_shift:
        return [rep["on_shift"] for rep in picture["reps"]]
    return None
