import asyncio
import json
import random
import re
import socket
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dispatcher.demo import DemoPlan, _arrival_rate, _LeadMaker, _serves, demo_roster, demo_routing, run_demo
from dispatcher.routing import parse_routing

LEAD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SCALAR = (str, int, float, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _attributes_problems(attributes) -> list[str]:
    if not isinstance(attributes, dict):
        return ["attributes is not an object"]
    return [
        f"attribute {key} is neither scalar nor list of scalars"
        for key, value in attributes.items()
        if not (isinstance(value, SCALAR) or (isinstance(value, list) and all(isinstance(v, SCALAR) for v in value)))
    ]


def rep_body_problems(body) -> list[str]:
    """What the API's `PUT /v1/reps/{rep_id}` would reject in `body`."""
    problems = []
    capacity = body.get("capacity")
    if not (_is_count(capacity) or (
        isinstance(capacity, dict) and capacity
        and all(isinstance(channel, str) and _is_count(n) for channel, n in capacity.items())
    )):
        problems.append(f"capacity {capacity!r}")
    if not isinstance(body.get("name", ""), str):
        problems.append("name")
    skills = body.get("skills", {})
    if not isinstance(skills, dict) or not all(
        isinstance(level, int) and not isinstance(level, bool) and 1 <= level <= 10 for level in skills.values()
    ):
        problems.append(f"skills {skills!r}")
    problems += _attributes_problems(body.get("attributes", {}))
    teams = body.get("teams", [])
    if not isinstance(teams, list) or not all(isinstance(team, str) for team in teams):
        problems.append(f"teams {teams!r}")
    return problems


def lead_body_problems(body) -> list[str]:
    """What the API's `POST /v1/leads` would reject in `body`."""
    problems = []
    if not isinstance(body.get("id"), str) or not LEAD_ID.fullmatch(body["id"]):
        problems.append(f"id {body.get('id')!r}")
    if not isinstance(body.get("channel", "web"), str):
        problems.append("channel")
    priority = body.get("priority", 0)
    if not (isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 9):
        problems.append(f"priority {priority!r}")
    if not isinstance(body.get("customer_id", ""), str):
        problems.append("customer_id")
    value = body.get("value", 0)
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
        problems.append(f"value {value!r}")
    skills = body.get("skills", [])
    if not isinstance(skills, list) or not all(isinstance(skill, str) for skill in skills):
        problems.append(f"skills {skills!r}")
    problems += _attributes_problems(body.get("attributes", {}))
    return problems


# --- the roster ---------------------------------------------------------------------------------

def test_default_roster_bodies_satisfy_the_contract():
    plan = DemoPlan()
    roster = demo_roster(plan, random.Random(1))

    assert len(roster) == plan.reps
    assert {rep_id: rep_body_problems(body) for rep_id, body in roster if rep_body_problems(body)} == {}
    rep_ids = [rep_id for rep_id, _ in roster]
    assert len(set(rep_ids)) == len(rep_ids)
    assert all(re.fullmatch(r"[a-z0-9-]+", rep_id) for rep_id in rep_ids)


def test_default_roster_looks_like_a_real_floor():
    plan = DemoPlan()
    bodies = [body for _, body in demo_roster(plan, random.Random(2))]

    assert all(body["name"] and " " in body["name"] for body in bodies)
    assert {team for body in bodies for team in body["teams"]} == set(plan.teams)
    assert {type(body["capacity"]) for body in bodies} == {int, dict}
    assert all(1 <= body["attributes"]["rank"] <= 10 for body in bodies)
    assert {body["attributes"]["region"] for body in bodies} <= {"east", "west", "north", "south"}
    skills = Counter(skill for body in bodies for skill in body["skills"])
    assert skills["english"] == plan.reps
    assert skills["spanish"] and skills["mandarin"] and skills["enterprise"]
    enterprise_team = [body for body in bodies if "enterprise" in body["teams"]]
    assert enterprise_team and all("enterprise" in body["skills"] for body in enterprise_team)


def test_roster_is_deterministic_for_a_seed():
    plan = DemoPlan()
    assert demo_roster(plan, random.Random(7)) == demo_roster(plan, random.Random(7))
    assert demo_roster(plan, random.Random(7)) != demo_roster(plan, random.Random(8))


def test_a_tiny_roster_still_speaks_every_language_a_lead_may_ask_for():
    bodies = [body for _, body in demo_roster(DemoPlan(reps=3, teams=("floor",)), random.Random(3))]
    assert {"english", "spanish", "mandarin"} <= {skill for body in bodies for skill in body["skills"]}


def test_a_roster_larger_than_the_name_pool_keeps_ids_unique():
    roster = demo_roster(DemoPlan(reps=1500), random.Random(4))
    assert len({rep_id for rep_id, _ in roster}) == 1500


def test_plan_rejects_knobs_that_make_no_sense():
    with pytest.raises(ValueError, match="burst_length_s"):
        DemoPlan(burst_every_s=5, burst_length_s=10)
    with pytest.raises(ValueError, match="reps"):
        DemoPlan(reps=0)


# --- the traffic --------------------------------------------------------------------------------

def test_leads_are_valid_and_only_ask_for_what_the_roster_can_serve():
    roster = demo_roster(DemoPlan(), random.Random(5))
    maker = _LeadMaker(roster, random.Random(5), repeat_customer_share=0.25)
    leads = [maker.make(in_promotion=False) for _ in range(3000)]

    assert [problem for lead in leads for problem in lead_body_problems(lead)] == []
    assert len({lead["id"] for lead in leads}) == len(leads)
    for lead in leads:
        assert any(
            _serves(body["capacity"], lead["channel"]) and set(lead.get("skills", [])) <= set(body["skills"])
            for _, body in roster
        ), lead
    priorities = Counter(lead["priority"] for lead in leads)
    assert sum(priorities[p] for p in range(4)) > 0.7 * len(leads)
    assert sum(priorities[p] for p in (7, 8, 9)) > 0
    assert {lead["channel"] for lead in leads} == {"web", "chat", "call", "email", "form"}
    assert any("spanish" in lead.get("skills", []) for lead in leads)
    assert max(Counter(lead["customer_id"] for lead in leads).values()) > 1


def test_promotions_come_after_a_calm_stretch_and_repeat():
    plan = DemoPlan(leads_per_second=2, burst_every_s=60, burst_factor=5, burst_length_s=8)
    assert _arrival_rate(plan, 0) == (2, 52)
    assert _arrival_rate(plan, 52) == (10, 8)
    assert _arrival_rate(plan, 61) == (2, 51)
    assert _arrival_rate(DemoPlan(burst_length_s=0), 1e6)[1] == float("inf")


# --- the floor against a stand-in of the HTTP contract ------------------------------------------

class RecordingContractStandIn:
    """Records what the demo sends and answers the way the README says the worker answers.
    It only stands in for the worker while the real one is being written: it routes nothing,
    it just reports leads as queued, then assigned, after a few looks."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.violations: list[str] = []
        self.reps: dict[str, dict] = {}
        self.presence: dict[str, list[str]] = {}
        self.leads: dict[str, dict] = {}
        self.looks: Counter[str] = Counter()
        self.reported_assigned: set[str] = set()
        self.closes: dict[str, str] = {}
        app = web.Application(middlewares=[self._check_token])
        app.add_routes([
            web.put("/v1/reps/{rep_id}", self._put_rep),
            web.post("/v1/reps/{rep_id}/presence", self._presence),
            web.post("/v1/leads", self._post_lead),
            web.get("/v1/leads/{lead_id}", self._get_lead),
            web.post("/v1/leads/{lead_id}/close", self._close),
        ])
        self.server = TestServer(app)

    @web.middleware
    async def _check_token(self, request, handler):
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            self.violations.append(f"{request.method} {request.path} without the token")
            return web.json_response({"error": "missing or wrong token"}, status=401)
        return await handler(request)

    async def _put_rep(self, request):
        body = await request.json()
        self.violations += rep_body_problems(body)
        self.reps[request.match_info["rep_id"]] = body
        return web.json_response({"id": request.match_info["rep_id"], "status": "offline", "load": 0, **body})

    async def _presence(self, request):
        rep_id = request.match_info["rep_id"]
        if rep_id not in self.reps:
            return web.json_response({"error": "unknown rep"}, status=404)
        status = (await request.json()).get("status")
        if status not in ("online", "away", "offline"):
            self.violations.append(f"presence {status!r}")
        self.presence.setdefault(rep_id, []).append(status)
        return web.json_response({"id": rep_id, "status": status})

    async def _post_lead(self, request):
        body = await request.json()
        self.violations += lead_body_problems(body)
        self.leads[body["id"]] = body
        return web.json_response({"id": body["id"], "status": "accepted"}, status=202)

    async def _get_lead(self, request):
        lead_id = request.match_info["lead_id"]
        if lead_id not in self.leads:
            return web.json_response({"error": "unknown lead"}, status=404)
        self.looks[lead_id] += 1
        if lead_id in self.closes:
            status = "closed"
        elif self.looks[lead_id] == 1:
            status = "pending"
        elif sum(map(ord, lead_id)) % 3 == 0 and self.looks[lead_id] < 4:
            status = "queued"
        else:
            status = "assigned"
            self.reported_assigned.add(lead_id)
        rep_id = next(iter(self.reps)) if status in ("assigned", "closed") else None
        return web.json_response({"id": lead_id, "status": status, "rep_id": rep_id, "queue": "default",
                                  "strategy": "load_aware", "reason": "stand-in", "history": []})

    async def _close(self, request):
        lead_id = request.match_info["lead_id"]
        if lead_id not in self.reported_assigned:
            self.violations.append(f"closed {lead_id}, never reported assigned")
        if lead_id in self.closes:
            self.violations.append(f"closed {lead_id} twice")
        self.closes[lead_id] = (await request.json()).get("outcome")
        return web.json_response({"id": lead_id, "status": "closed"})


async def _play(base_url: str, plan: DemoPlan, seconds: float, token: str | None = None,
                until=lambda: False) -> float:
    """Run the demo for `seconds`, or less once `until()` holds; returns how long it took to stop
    once asked. `until` lets a test wait for what it must see rather than guess how long a slow
    machine takes to get there."""
    stop = asyncio.Event()
    demo = asyncio.create_task(run_demo(base_url, plan, stop, token=token))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        await asyncio.sleep(0.05)
    asked_at = time.monotonic()
    stop.set()
    await asyncio.wait_for(demo, timeout=2)
    return time.monotonic() - asked_at


BUSY_PLAN = DemoPlan(
    reps=8, leads_per_second=40, burst_every_s=1.0, burst_length_s=0.3, burst_factor=3,
    mean_handle_time_s=0.05, heartbeat_every_s=(0.1, 0.2), away_probability_per_min=1.0, mean_away_s=0.3,
    reps_taking_breaks=1, mean_time_between_breaks_s=0.3, mean_break_s=0.3, polls_per_second=400, seed=11,
)


async def test_demo_drives_the_floor_through_the_public_api():
    stand_in = RecordingContractStandIn(token="s3cret")

    def not_seen_yet() -> list[str]:
        every_status = Counter(status for statuses in stand_in.presence.values() for status in statuses)
        closes = set(stand_in.closes.values())
        checks = {
            "every rep put on the floor": set(stand_in.presence) == set(stand_in.reps)
            and len(stand_in.reps) == BUSY_PLAN.reps,
            "reps going away and offline": every_status["away"] and every_status["offline"],
            "every rep heartbeating": all(len(statuses) > 2 for statuses in stand_in.presence.values()),
            "more than 40 leads": len(stand_in.leads) > 40,
            "a flash-sale lead": any(lead["attributes"]["source"] == "flash-sale"
                                     for lead in stand_in.leads.values()),
            "more than 20 closes": len(stand_in.closes) > 20,
            "closes with more than one outcome, all known": len(closes) > 1
            and closes <= {"won", "lost", "no_answer"},
        }
        return [what for what, seen in checks.items() if not seen]

    await stand_in.server.start_server()
    try:
        stop_took = await _play(str(stand_in.server.make_url("/")), BUSY_PLAN, seconds=20.0, token="s3cret",
                                until=lambda: not not_seen_yet())
    finally:
        await stand_in.server.close()

    assert stand_in.violations == []
    assert not_seen_yet() == []
    assert all(statuses[0] == "online" for statuses in stand_in.presence.values())
    assert stop_took < 0.5


async def test_demo_carries_on_when_nobody_answers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    stop_took = await _play(f"http://127.0.0.1:{closed_port}", BUSY_PLAN, seconds=0.5)
    assert stop_took < 0.5


async def test_demo_carries_on_through_server_errors():
    async def broken(request):
        return web.json_response({"error": "boom"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", broken)
    server = TestServer(app)
    await server.start_server()
    try:
        stop_took = await _play(str(server.make_url("/")), BUSY_PLAN, seconds=0.5)
    finally:
        await server.close()
    assert stop_took < 0.5


async def test_demo_that_is_stopped_before_it_starts_returns_at_once():
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(run_demo("http://127.0.0.1:9", DemoPlan(), stop), timeout=0.5)


# --- the floor against a real worker: offers, the pool and SLAs ---------------------------------

# Seconds where the default floor takes tens of them: offers run out after 1.6 s, first contact is
# due within 1.2 s, leads go to the pool after 0.5 s, and a rep looks at the pool five times a second.
# Reps learn of an offer by polling (0.2 s after the post, then 0.6 s): with offers of 0.8 s, a busy
# machine (the suite's other process) let so many run out unseen that they outnumbered the accepts.
LIFE_PLAN = DemoPlan(
    reps=6, teams=("floor", "keys"), leads_per_second=8, burst_length_s=0, mean_handle_time_s=1.0,
    heartbeat_every_s=(0.5, 1.0), away_probability_per_min=0, reps_taking_breaks=0, polls_per_second=200,
    accept_timeout_s=1.6, mean_answer_s=0.1, accept_share=0.7, reject_share=0.15, first_contact_s=1.2,
    contact_share=0.7, pool_after_s=0.5, claim_every_s=0.2, seed=5,
)
LIFE_EVENTS = {"accepted", "rejected", "offer_timed_out", "claimed", "contacted", "sla_breached"}
# Offers answered and first contacts settled before the shares are judged: with 7 in 10 contacted,
# ten leads tie contacted with breached once in a few dozen runs; forty, about once in a thousand.
LIFE_SAMPLE = 40


def _enough(seen: Counter[str]) -> bool:
    return (LIFE_EVENTS <= set(seen) and seen["contacted"] + seen["sla_breached"] >= LIFE_SAMPLE
            and seen["accepted"] + seen["rejected"] + seen["offer_timed_out"] >= LIFE_SAMPLE)


def test_the_demo_routing_is_one_a_worker_accepts():
    routing = parse_routing(json.dumps(demo_routing(DemoPlan())), "demo")
    assert routing.by_name["floor"].offer and routing.by_name["floor"].sla
    # Leads from outside the demo are routed as the built-in routing would: load-aware, no offers.
    assert routing.route({"id": "x", "attributes": {"grade": "A", "language": "english"}}).queue == "default"
    assert not routing.by_name["default"].offer and routing.by_name["default"].strategy == "load_aware"
    assert routing.by_name["key-accounts"].pool.after_s == DemoPlan().pool_after_s


async def test_the_floor_accepts_rejects_and_misses_offers_claims_from_the_pool_and_breaches(worker_factory):
    worker = worker_factory(DISPATCHER_DUE_POLL_S="0.1")
    base = f"http://127.0.0.1:{worker.http_port}"
    rep_ids = [rep_id for rep_id, _ in demo_roster(LIFE_PLAN, random.Random(LIFE_PLAN.seed))]
    stop = asyncio.Event()
    demo = asyncio.create_task(run_demo(base, LIFE_PLAN, stop))
    seen: Counter[str] = Counter()
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline and not _enough(seen):
                await asyncio.sleep(1.0)
                seen.clear()
                for rep_id in rep_ids:
                    async with session.get(f"{base}/v1/reps/{rep_id}/history?limit=500") as response:
                        events = (await response.json()).get("events", [])
                    seen.update(event.get("event") for event in events)
            async with session.get(f"{base}/v1/routing") as response:
                routing = await response.json()
    finally:
        stop.set()
        await asyncio.wait_for(demo, timeout=5)
    assert routing["source"] == "PUT /v1/routing" and set(routing["spec"]["queues"]) == {"default", "floor", "key-accounts"}
    assert _enough(seen), f"too few of {LIFE_EVENTS} in 25 s: {dict(seen)}"
    # Most offers are accepted and most leads contacted: the floor looks like a working one.
    assert seen["accepted"] > seen["rejected"] + seen["offer_timed_out"]
    assert seen["contacted"] > seen["sla_breached"]
