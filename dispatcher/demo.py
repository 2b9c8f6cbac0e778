"""A simulated floor for `dispatcher dev`: a roster of reps who come, go and close leads, and a stream
of leads with promotion bursts, all driven through the public HTTP API so the demo exercises exactly
what a real CRM integration would. Its routing (put over HTTP) offers most leads with an accept
timeout and a first-contact SLA, and sends grade-A and B leads to the last team's queue, which pools the
leads nobody takes in time: reps accept most offers, reject some and let a few run out, record first
contact for most leads and miss a few, and now and then claim from the pool."""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import random
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("dispatcher.demo")

_CHANNEL_WEIGHTS = {"web": 35, "chat": 30, "call": 15, "email": 12, "form": 8}
_REGION_WEIGHTS = {"east": 30, "west": 30, "north": 20, "south": 20}
_PRODUCTS = ("crm", "payments", "analytics")
_INDUSTRIES = ("retail", "manufacturing", "healthcare", "finance", "education", "software", "logistics")
_SOURCES = ("google-ads", "organic", "referral", "partner", "trade-show", "newsletter")
_PROMOTION_SOURCE = "flash-sale"
# Every lead the demo makes carries this attribute: its routing offers only those, and leaves the
# rest of the dev stack's leads to the built-in routing's load-aware assignment.
DEMO_MARK = {"floor": "demo"}

# Name pools by the language a rep grew up with, so the Spanish and Mandarin speakers on the floor
# read as plausible people rather than random skill flags.
_NAMES_BY_HERITAGE = {
    "spanish": (
        ("María", "José", "Lucía", "Carlos", "Sofía", "Diego", "Valentina", "Javier", "Camila",
         "Alejandro", "Gabriela", "Mateo", "Isabel", "Andrés"),
        ("García", "Rodríguez", "Martínez", "Hernández", "López", "González", "Pérez", "Sánchez",
         "Ramírez", "Torres", "Flores", "Rivera"),
    ),
    "mandarin": (
        ("Wei", "Mei", "Jun", "Li Na", "Hao", "Xiu", "Yan", "Jie", "Ming", "Lan", "Tao", "Ying"),
        ("Chen", "Wang", "Li", "Zhang", "Liu", "Huang", "Zhao", "Wu", "Zhou", "Lin"),
    ),
    "english": (
        ("Emma", "Liam", "Olivia", "Noah", "Ava", "James", "Sophia", "Ethan", "Grace", "Owen", "Priya",
         "Arjun", "Aisha", "Kwame", "Fatima", "Tomasz", "Ingrid", "Hannah", "Marcus", "Chloe", "Daniel",
         "Nadia", "Samuel", "Leah", "Kenji", "Yuki", "Omar", "Zara"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
         "Taylor", "Moore", "Patel", "Okafor", "Mensah", "Kowalski", "Nguyen", "Khan", "O'Brien",
         "Schmidt", "Murphy", "Cohen", "Kim", "Ali", "Tanaka"),
    ),
}
_HERITAGE_WEIGHTS = {"english": 60, "spanish": 25, "mandarin": 15}

_TICK_S = 0.1
_FIRST_POLL_DELAY_S = 0.2
_MAX_POLL_INTERVAL_S = 8.0
_RETRY_S = 3.0
# A lead the dispatcher still does not know after this long was most likely never accepted.
_UNKNOWN_LEAD_GIVE_UP_S = 120.0
_COMPLAINT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class DemoPlan:
    """How busy the simulated floor is. The defaults keep 36 reps at about a third of their capacity
    between promotions; a promotion every minute nearly fills the floor and queues the calls, so the
    dashboard shows queues forming and draining."""

    reps: int = 36
    teams: tuple[str, ...] = ("inbound-sales", "support", "enterprise")
    leads_per_second: float = 4.0
    burst_every_s: float = 60.0
    burst_factor: float = 5.0
    burst_length_s: float = 8.0
    mean_handle_time_s: float = 20.0
    away_probability_per_min: float = 0.05
    mean_away_s: float = 60.0
    reps_taking_breaks: int = 2
    mean_time_between_breaks_s: float = 300.0
    mean_break_s: float = 150.0
    heartbeat_every_s: tuple[float, float] = (10.0, 20.0)
    repeat_customer_share: float = 0.25
    polls_per_second: float = 50.0
    max_tracked_leads: int = 1000
    max_concurrent_requests: int = 16
    # The routing the demo puts over HTTP (False: keep the routing in force, e.g. the user's file).
    own_routing: bool = True
    accept_timeout_s: float = 15.0
    mean_answer_s: float = 2.0
    accept_share: float = 0.85
    reject_share: float = 0.1
    first_contact_s: float = 45.0
    contact_share: float = 0.9
    pool_after_s: float = 20.0
    claim_every_s: float = 3.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.reps < 1:
            problems.append("reps must be at least 1")
        if not self.teams:
            problems.append("teams must name at least one team")
        if self.leads_per_second < 0:
            problems.append("leads_per_second must be >= 0")
        if self.burst_factor < 0:
            problems.append("burst_factor must be >= 0")
        if not 0 <= self.burst_length_s <= self.burst_every_s:
            problems.append("burst_length_s must be between 0 and burst_every_s")
        if self.mean_handle_time_s <= 0 or self.mean_away_s <= 0 or self.mean_break_s <= 0:
            problems.append("handle, away and break times must be > 0")
        if self.mean_time_between_breaks_s <= 0:
            problems.append("mean_time_between_breaks_s must be > 0")
        if not 0 <= self.away_probability_per_min <= 1 or not 0 <= self.repeat_customer_share <= 1:
            problems.append("probabilities must be between 0 and 1")
        if not 0 < self.heartbeat_every_s[0] <= self.heartbeat_every_s[1]:
            problems.append("heartbeat_every_s must be an increasing pair of positive seconds")
        if not 0 <= self.accept_share + self.reject_share <= 1 or min(self.accept_share, self.reject_share) < 0:
            problems.append("accept_share and reject_share must be >= 0 and add up to at most 1")
        if not 0 <= self.contact_share <= 1:
            problems.append("contact_share must be between 0 and 1")
        if min(self.accept_timeout_s, self.mean_answer_s, self.first_contact_s, self.pool_after_s,
               self.claim_every_s) <= 0:
            problems.append("offer, answer, contact, pool and claim times must be > 0")
        if self.polls_per_second <= 0 or self.max_tracked_leads < 1 or self.max_concurrent_requests < 1:
            problems.append("polls_per_second, max_tracked_leads and max_concurrent_requests must be positive")
        if problems:
            raise ValueError("; ".join(problems))


def demo_routing(plan: DemoPlan) -> dict[str, Any]:
    """The routing the demo puts (PUT /v1/routing). The demo's own leads (marked DEMO_MARK) are
    offered in `floor` over all reps, with a first-contact SLA that re-routes a missed lead; its
    grade-A and B English leads go to the last team's queue, whose leads waiting too long, or not
    contacted in time, go to its claim pool. Every other lead, such as one a user posts to try the dev
    stack, goes to `default` as the built-in routing sends it: load-aware over all reps, assigned
    at once, as the contract has it."""
    sla = {"first_contact_s": plan.first_contact_s}
    return {
        "channels": list(_CHANNEL_WEIGHTS),
        "queues": {
            "key-accounts": {"strategy": "priority", "members": {"teams": [plan.teams[-1]]},
                             "pool": {"after_s": plan.pool_after_s}, "sla": {**sla, "on_breach": "pool"}},
            "floor": {"offer": {"accept_timeout_s": plan.accept_timeout_s, "away_after_timeouts": 3},
                      "sla": {**sla, "on_breach": "reroute"}},
            "default": {},
        },
        "rules": [
            {"when": {"attributes": {**DEMO_MARK, "grade": ["A", "B"], "language": "english"}}, "queue": "key-accounts"},
            {"when": {"attributes": DEMO_MARK}, "queue": "floor"},
        ],
        "default_queue": "default",
    }


def demo_roster(plan: DemoPlan, rng: random.Random) -> list[tuple[str, dict]]:
    """`plan.reps` reps as `(rep_id, body of PUT /v1/reps/{rep_id})`, the same for the same rng state."""
    heritages = _roster_heritages(plan.reps, rng)
    taken_ids: set[str] = set()
    taken_names: set[str] = set()
    roster = []
    for index, heritage in enumerate(heritages):
        name = _unused_name(heritage, taken_names, rng)
        rep_id = _unused_id(_slug(name), taken_ids)
        primary_team = plan.teams[index % len(plan.teams)]
        teams = [primary_team]
        if len(plan.teams) > 1 and rng.random() < 0.2:
            teams.append(rng.choice([team for team in plan.teams if team != primary_team]))
        rank = min(10, max(1, round(rng.gauss(5.5, 2.2))))
        languages = ["english"] if heritage == "english" else [heritage, "english"]
        skills = {"english": rng.randint(6, 10) if heritage != "english" else 10}
        if heritage != "english":
            skills[heritage] = 10
        elif rng.random() < 0.15:
            skills["spanish"] = rng.randint(3, 7)
            languages.append("spanish")
        for product in rng.sample(_PRODUCTS, rng.randint(1, len(_PRODUCTS))):
            skills[product] = rng.randint(max(1, rank - 3), min(10, rank + 3))
        if any("enterprise" in team for team in teams):
            skills["enterprise"] = rng.randint(6, 10)
        elif rank >= 8 and rng.random() < 0.5:
            skills["enterprise"] = rng.randint(3, 6)
        body = {
            "name": name,
            "capacity": _capacity(rng),
            "skills": skills,
            "attributes": {
                "region": _weighted_choice(_REGION_WEIGHTS, rng),
                "rank": rank,
                "languages": languages,
            },
            "teams": teams,
        }
        roster.append((rep_id, body))
    return roster


async def run_demo(base_url: str, plan: DemoPlan, stop: asyncio.Event, *, token: str | None = None) -> None:
    """Play the floor against the dispatcher at `base_url` until `stop` is set. Never raises: a demo
    that breaks must not take the dispatcher it decorates down with it."""
    if stop.is_set():
        return
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as session:
            await _Floor(base_url, plan, stop, session).run()
    except Exception:
        log.exception("the demo floor failed and has stopped; the dispatcher itself is unaffected")


def _roster_heritages(reps: int, rng: random.Random) -> list[str]:
    # Every language a lead may ask for is guaranteed a speaker, however small the roster.
    heritages = ["spanish", "mandarin", "english"][:reps]
    heritages += [_weighted_choice(_HERITAGE_WEIGHTS, rng) for _ in range(reps - len(heritages))]
    rng.shuffle(heritages)
    return heritages


def _unused_name(heritage: str, taken: set[str], rng: random.Random) -> str:
    first_names, last_names = _NAMES_BY_HERITAGE[heritage]
    name = f"{rng.choice(first_names)} {rng.choice(last_names)}"
    for _ in range(20):
        if name not in taken:
            break
        name = f"{rng.choice(first_names)} {rng.choice(last_names)}"
    # Real floors do have two John Smiths once the pool runs dry; their ids tell them apart.
    taken.add(name)
    return name


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "-".join("".join(c for c in word if c.isalnum()) for word in ascii_name.lower().split())


def _unused_id(slug: str, taken: set[str]) -> str:
    rep_id, suffix = slug, 1
    while rep_id in taken:
        suffix += 1
        rep_id = f"{slug}-{suffix}"
    taken.add(rep_id)
    return rep_id


def _capacity(rng: random.Random) -> int | dict[str, int]:
    if rng.random() < 0.4:
        return rng.randint(3, 6)
    return {
        "web": rng.randint(1, 3),
        "chat": rng.randint(2, 4),
        # Some reps take no calls; an explicit 0 says so without leaning on how the server reads a
        # channel missing from the map.
        "call": 0 if rng.random() < 0.3 else 1,
        "email": rng.randint(2, 5),
        "form": rng.randint(1, 3),
    }


def _weighted_choice(weights: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _serves(capacity: int | dict[str, int], channel: str) -> bool:
    return capacity > 0 if isinstance(capacity, int) else capacity.get(channel, 0) > 0


def _arrival_rate(plan: DemoPlan, elapsed_s: float) -> tuple[float, float]:
    """Leads per second at `elapsed_s` into the demo, and how many seconds that rate lasts.
    Each period is calm first, so the floor fills before the first promotion hits it."""
    if plan.burst_length_s <= 0:
        return plan.leads_per_second, math.inf
    into_period = elapsed_s % plan.burst_every_s
    calm_s = plan.burst_every_s - plan.burst_length_s
    if into_period < calm_s:
        return plan.leads_per_second, calm_s - into_period
    return plan.leads_per_second * plan.burst_factor, plan.burst_every_s - into_period


def _chance_within(probability_per_min: float, elapsed_s: float) -> float:
    return 1 - (1 - probability_per_min) ** (elapsed_s / 60)


class _LeadMaker:
    """Invents leads, asking only for skill and channel combinations some rep on the roster can
    serve, so no demo lead waits forever for a rep who does not exist."""

    def __init__(self, roster: list[tuple[str, dict]], rng: random.Random, repeat_customer_share: float):
        self._reps = [(body["capacity"], set(body.get("skills", {}))) for _, body in roster]
        self._rng = rng
        self._repeat_customer_share = repeat_customer_share
        self._recent_customers: deque[str] = deque(maxlen=200)
        self._serial = 0
        self._channel_weights = {
            channel: weight for channel, weight in _CHANNEL_WEIGHTS.items()
            if any(_serves(capacity, channel) for capacity, _ in self._reps)
        }

    def make(self, in_promotion: bool) -> dict[str, Any]:
        rng = self._rng
        self._serial += 1
        channel = _weighted_choice(self._channel_weights, rng)
        value = round(rng.lognormvariate(7.5, 1.2), 2)
        grade = "A" if value >= 20_000 else "B" if value >= 3_000 else "C"
        product = rng.choice(_PRODUCTS)
        language = "spanish" if rng.random() < 0.12 else "mandarin" if rng.random() < 0.06 else "english"
        wanted = []
        if language != "english":
            wanted.append(language)
        if grade == "A" and rng.random() < 0.6:
            wanted.append("enterprise")
        if rng.random() < 0.1:
            wanted.append(product)
        skills: list[str] = []
        for skill in wanted:
            if self._servable(channel, {*skills, skill}):
                skills.append(skill)
        lead: dict[str, Any] = {
            "id": f"demo-{self._serial}-{rng.getrandbits(32):08x}",
            "channel": channel,
            "priority": self._priority(grade),
            "customer_id": self._customer(),
            "value": value,
            "attributes": {
                "region": _weighted_choice(_REGION_WEIGHTS, rng),
                "industry": rng.choice(_INDUSTRIES),
                "product": product,
                "source": _PROMOTION_SOURCE if in_promotion else rng.choice(_SOURCES),
                "grade": grade,
                "language": language,
                **DEMO_MARK,
            },
        }
        if skills:
            lead["skills"] = skills
        return lead

    def _servable(self, channel: str, skills: set[str]) -> bool:
        return any(_serves(capacity, channel) and skills <= rep_skills for capacity, rep_skills in self._reps)

    def _priority(self, grade: str) -> int:
        roll = self._rng.random()
        if roll < 0.06:
            return self._rng.randint(7, 9)
        if roll < 0.14 or grade == "A":
            return self._rng.randint(4, 6)
        return self._rng.choices((0, 1, 2, 3), weights=(40, 30, 20, 10))[0]

    def _customer(self) -> str:
        if self._recent_customers and self._rng.random() < self._repeat_customer_share:
            return self._rng.choice(self._recent_customers)
        customer = f"cust-{self._rng.getrandbits(32):08x}"
        self._recent_customers.append(customer)
        return customer


class _Complaints:
    """Keeps a down or misconfigured dispatcher from flooding the log: one line per kind of trouble
    per interval, and a single line when the dispatcher is lost and when it is back."""

    def __init__(self, base_url: str):
        self._base_url = base_url
        self._last_said: dict[str, float] = {}
        self._held_back: dict[str, int] = {}
        self._unreachable = False

    def say(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_said.get(key, -math.inf) < _COMPLAINT_INTERVAL_S:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return
        self._last_said[key] = now
        held_back = self._held_back.pop(key, 0)
        log.warning("%s%s", message, f" ({held_back} more like it since the last report)" if held_back else "")

    def unreachable(self, error: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.warning("demo cannot reach the dispatcher at %s (%s); it keeps retrying",
                        self._base_url, str(error) or type(error).__name__)

    def reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            log.info("demo reaches the dispatcher at %s again", self._base_url)


@dataclass
class _TrackedLead:
    posted_at: float
    polls: int = 0
    rep_id: str | None = None
    # The rep the lead was last seen offered to: each offer is answered (or let run out) once.
    offered_to: str | None = None


@dataclass(order=True)
class _Due:
    at: float
    lead_id: str = field(compare=False)
    # What a rep does then: accept, reject, contact (for polls and closes the agenda says it).
    action: str = field(default="", compare=False)


class _Floor:
    def __init__(self, base_url: str, plan: DemoPlan, stop: asyncio.Event, session: aiohttp.ClientSession):
        self._base_url = base_url.rstrip("/")
        self._plan = plan
        self._stop = stop
        self._session = session
        self._rng = random.Random(plan.seed)
        self._roster = demo_roster(plan, self._rng)
        self._lead_maker = _LeadMaker(self._roster, self._rng, plan.repeat_customer_share)
        # Better-ranked reps convert more, so performance-weighted routing has something to find.
        self._win_rate = {rep_id: 0.15 + 0.02 * body["attributes"]["rank"] for rep_id, body in self._roster}
        self._slots = asyncio.Semaphore(plan.max_concurrent_requests)
        self._complaints = _Complaints(self._base_url)
        self._roster_first_tries_left = len(self._roster)
        self._roster_tried = asyncio.Event()
        self._tracked: dict[str, _TrackedLead] = {}
        self._polls_due: list[_Due] = []
        self._closes_due: list[_Due] = []
        self._answers_due: list[_Due] = []
        self._status: dict[str, str] = {}
        self._pool_team = [rep_id for rep_id, body in self._roster if plan.teams[-1] in body["teams"]]
        self._in_flight: set[asyncio.Task] = set()
        self._saturated = False

    async def run(self) -> None:
        log.info(
            "demo floor: %d reps in %s, %.1f leads/s with %gx promotions every %gs, against %s",
            len(self._roster), ", ".join(self._plan.teams), self._plan.leads_per_second,
            self._plan.burst_factor, self._plan.burst_every_s, self._base_url,
        )
        on_break = set(self._rng.sample([rep_id for rep_id, _ in self._roster],
                                        min(self._plan.reps_taking_breaks, len(self._roster))))
        if self._plan.own_routing:
            await self._call("PUT", "/v1/routing", demo_routing(self._plan))
        lives = [self._start(self._live_as_rep(rep_id, body, rep_id in on_break)) for rep_id, body in self._roster]
        loops = [self._start(self._arrivals()), self._start(self._work_leads()), self._start(self._claim_from_pool())]
        try:
            await self._stop.wait()
        finally:
            everything = [*lives, *loops, *self._in_flight]
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
            log.info("demo floor stopped")

    def _start(self, work) -> asyncio.Task:
        task = asyncio.create_task(work)
        task.add_done_callback(self._report_crash)
        return task

    @staticmethod
    def _report_crash(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("a part of the demo floor crashed; the rest carries on", exc_info=task.exception())

    async def _rest(self, seconds: float) -> bool:
        """Sleep, waking early when the demo stops; True when it has."""
        try:
            await asyncio.wait_for(self._stop.wait(), None if math.isinf(seconds) else max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    async def _call(self, method: str, path: str, body: dict | None = None,
                    quiet: tuple[int, ...] = ()) -> tuple[int, Any] | None:
        """The answer as (status, JSON or None), or None when there was no answer (logged). `quiet`:
        refusals that are part of the floor's life (an offer that ran out, a pool lead taken first)."""
        try:
            async with self._slots:
                async with self._session.request(method, self._base_url + path, json=body) as response:
                    status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            self._complaints.unreachable(error)
            return None
        self._complaints.reachable()
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        if status >= 500 or (status >= 400 and status != 404 and status not in quiet):
            detail = payload.get("error") if isinstance(payload, dict) else text[:200]
            self._complaints.say(f"{method} {path.split('/')[2]} {status}", f"{method} {path} got {status}: {detail}")
        return status, payload

    async def _enlist(self, rep_id: str, body: dict) -> bool:
        answer = await self._call("PUT", f"/v1/reps/{rep_id}", body)
        return answer is not None and 200 <= answer[0] < 300

    async def _live_as_rep(self, rep_id: str, body: dict, takes_breaks: bool) -> None:
        plan, rng, loop = self._plan, self._rng, asyncio.get_running_loop()
        enlisted = await self._enlist(rep_id, body)
        self._roster_first_tries_left -= 1
        if self._roster_first_tries_left == 0:
            self._roster_tried.set()
        status, status_ends_at = "online", math.inf
        next_break_at = loop.time() + rng.expovariate(1 / plan.mean_time_between_breaks_s) if takes_breaks else math.inf
        last_decision_at = loop.time()
        while True:
            if not enlisted:
                if await self._rest(_RETRY_S):
                    return
                enlisted = await self._enlist(rep_id, body)
                continue
            self._status[rep_id] = status
            answer = await self._call("POST", f"/v1/reps/{rep_id}/presence", {"status": status})
            if answer is not None and answer[0] == 404:
                # The dispatcher forgot this rep (a wiped redis, say): join the floor again.
                enlisted = False
                continue
            if status == "offline":
                # An offline rep is gone, not idle: no heartbeats until the break is over.
                wake_at = status_ends_at
            else:
                wake_at = min(loop.time() + rng.uniform(*plan.heartbeat_every_s), status_ends_at)
            if await self._rest(wake_at - loop.time()):
                return
            now = loop.time()
            if now >= status_ends_at:
                status, status_ends_at = "online", math.inf
            elif status == "online" and now >= next_break_at:
                status, status_ends_at = "offline", now + rng.expovariate(1 / plan.mean_break_s)
                next_break_at = status_ends_at + rng.expovariate(1 / plan.mean_time_between_breaks_s)
            elif status == "online" and rng.random() < _chance_within(
                plan.away_probability_per_min, now - last_decision_at
            ):
                status, status_ends_at = "away", now + plan.mean_away_s * rng.uniform(0.5, 1.5)
            last_decision_at = now

    async def _arrivals(self) -> None:
        """Poisson arrivals whose rate steps up during promotions. The wait is redrawn whenever the
        rate changes, which is exact because exponential waits are memoryless."""
        if await self._wait_for_roster():
            return
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        while True:
            rate, rate_lasts_s = _arrival_rate(self._plan, loop.time() - started_at)
            wait_s = self._rng.expovariate(rate) if rate > 0 else math.inf
            if await self._rest(min(wait_s, rate_lasts_s)):
                return
            if wait_s <= rate_lasts_s:
                self._arrive(in_promotion=rate > self._plan.leads_per_second)

    async def _wait_for_roster(self) -> bool:
        """Let the reps sign in before the first lead, so the floor starts out routing rather than queueing."""
        stopped = asyncio.ensure_future(self._stop.wait())
        tried = asyncio.ensure_future(self._roster_tried.wait())
        try:
            await asyncio.wait({stopped, tried}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            tried.cancel()
        return self._stop.is_set()

    def _arrive(self, in_promotion: bool) -> None:
        # Past these bounds the dispatcher is not keeping up; piling on would only grow the demo's memory.
        saturated = (len(self._tracked) >= self._plan.max_tracked_leads
                     or len(self._in_flight) >= 4 * self._plan.max_concurrent_requests)
        if saturated != self._saturated:
            self._saturated = saturated
            if saturated:
                log.warning("demo floor is saturated (%d leads in play); holding back new leads", len(self._tracked))
            else:
                log.info("demo floor has room again; leads flow")
        if saturated:
            return
        lead = self._lead_maker.make(in_promotion)
        self._tracked[lead["id"]] = _TrackedLead(posted_at=asyncio.get_running_loop().time())
        self._spawn(self._post_lead(lead))

    def _spawn(self, work) -> None:
        task = self._start(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _post_lead(self, lead: dict) -> None:
        answer = await self._call("POST", "/v1/leads", lead)
        if answer is not None and 400 <= answer[0] < 500:
            del self._tracked[lead["id"]]
            return
        # Without an answer the lead may still have been accepted; polling finds out either way.
        self._schedule(self._polls_due, lead["id"], _FIRST_POLL_DELAY_S)

    def _schedule(self, agenda: list[_Due], lead_id: str, delay_s: float) -> None:
        heapq.heappush(agenda, _Due(asyncio.get_running_loop().time() + delay_s, lead_id))

    async def _work_leads(self) -> None:
        """Each tick: close what reps have finished, and look up a handful of leads still waiting
        for a rep; the poll budget keeps a deep queue from turning into a flood of GETs."""
        polls_per_tick = max(1, round(self._plan.polls_per_second * _TICK_S))
        loop = asyncio.get_running_loop()
        while not await self._rest(_TICK_S):
            if len(self._in_flight) >= 4 * self._plan.max_concurrent_requests:
                continue
            now = loop.time()
            while self._closes_due and self._closes_due[0].at <= now:
                self._spawn(self._close(heapq.heappop(self._closes_due).lead_id))
            while self._answers_due and self._answers_due[0].at <= now:
                due = heapq.heappop(self._answers_due)
                self._spawn(self._answer(due.lead_id, due.action))
            for _ in range(polls_per_tick):
                if not self._polls_due or self._polls_due[0].at > now:
                    break
                self._spawn(self._poll(heapq.heappop(self._polls_due).lead_id))

    async def _poll(self, lead_id: str) -> None:
        tracked = self._tracked[lead_id]
        tracked.polls += 1
        answer = await self._call("GET", f"/v1/leads/{lead_id}")
        status, payload = answer if answer is not None else (None, None)
        lead_status = payload.get("status") if status == 200 and isinstance(payload, dict) else None
        if lead_status == "assigned":
            self._take(lead_id, tracked, payload.get("rep_id"))
        elif lead_status == "offered":
            self._consider_offer(lead_id, tracked, payload.get("rep_id"))
        elif lead_status in ("pooled", "closed"):
            # A pooled lead is the claimers' now (they track what they claim); a closed lead is done.
            del self._tracked[lead_id]
        elif status == 404 and asyncio.get_running_loop().time() - tracked.posted_at > _UNKNOWN_LEAD_GIVE_UP_S:
            log.info("demo gives up on lead %s: the dispatcher never knew it", lead_id)
            del self._tracked[lead_id]
        else:
            # Fresh leads are usually routed within moments; leads queued behind a busy floor wait
            # longer, so they are looked at less and less often.
            next_look_s = min(_FIRST_POLL_DELAY_S * 2**tracked.polls, _MAX_POLL_INTERVAL_S)
            self._schedule(self._polls_due, lead_id, next_look_s)

    def _consider_offer(self, lead_id: str, tracked: _TrackedLead, rep_id: str | None) -> None:
        """The rep an offer reached answers it after a moment's thought, or lets it run out; either
        way the lead is looked at again after the offer's end, to follow it where it went."""
        plan, rng = self._plan, self._rng
        if rep_id != tracked.offered_to:
            tracked.offered_to = rep_id
            roll, answer_s = rng.random(), min(rng.expovariate(1 / plan.mean_answer_s), plan.accept_timeout_s * 0.8)
            if roll < plan.accept_share + plan.reject_share:
                action = "accept" if roll < plan.accept_share else "reject"
                heapq.heappush(self._answers_due, _Due(asyncio.get_running_loop().time() + answer_s, lead_id, action))
                self._schedule(self._polls_due, lead_id, answer_s + _FIRST_POLL_DELAY_S)
                return
        self._schedule(self._polls_due, lead_id, plan.accept_timeout_s + _FIRST_POLL_DELAY_S)

    def _take(self, lead_id: str, tracked: _TrackedLead, rep_id: str | None) -> None:
        """A lead now the rep's: most are contacted within the SLA, then closed; a missed one is
        looked at again after its deadline, when the breach has moved it on."""
        plan, rng = self._plan, self._rng
        tracked.rep_id, tracked.offered_to = rep_id, None
        handle_s = rng.expovariate(1 / plan.mean_handle_time_s)
        if rng.random() < plan.contact_share:
            contact_s = min(handle_s, plan.first_contact_s) * rng.uniform(0.1, 0.6)
            heapq.heappush(self._answers_due, _Due(asyncio.get_running_loop().time() + contact_s, lead_id, "contact"))
            self._schedule(self._closes_due, lead_id, max(handle_s, contact_s + _TICK_S))
        else:
            self._schedule(self._polls_due, lead_id, plan.first_contact_s + 2 * _FIRST_POLL_DELAY_S)

    async def _answer(self, lead_id: str, action: str) -> None:
        # 409: the offer ran out or the lead moved on meanwhile, as on a real floor.
        await self._call("POST", f"/v1/leads/{lead_id}/{action}", quiet=(409,))

    async def _claim_from_pool(self) -> None:
        """Now and then a rep of the pool's team with the time for it takes a lead from the pool."""
        if await self._wait_for_roster():
            return
        while not await self._rest(self._rng.expovariate(1 / self._plan.claim_every_s)):
            online = [rep_id for rep_id in self._pool_team if self._status.get(rep_id) == "online"]
            answer = await self._call("GET", "/v1/pool?queue=key-accounts", quiet=(404,))
            pooled = answer[1].get("leads") if answer and answer[0] == 200 and isinstance(answer[1], dict) else None
            if not online or not pooled or len(self._tracked) >= self._plan.max_tracked_leads:
                continue
            lead_id, rep_id = self._rng.choice(pooled)["id"], self._rng.choice(online)
            # 409: someone was first or the rep is full; 422: the rep lacks a skill the lead asks for.
            claimed = await self._call("POST", f"/v1/pool/{lead_id}/claim", {"rep_id": rep_id}, quiet=(409, 422))
            if claimed is not None and claimed[0] == 200 and lead_id not in self._tracked:
                self._tracked[lead_id] = _TrackedLead(posted_at=asyncio.get_running_loop().time())
                self._schedule(self._polls_due, lead_id, 0)

    async def _close(self, lead_id: str) -> None:
        rep_id = self._tracked[lead_id].rep_id
        won = self._rng.random() < self._win_rate.get(rep_id, 0.25)
        outcome = "won" if won else self._rng.choice(("lost", "lost", "no_answer"))
        answer = await self._call("POST", f"/v1/leads/{lead_id}/close", {"outcome": outcome})
        if answer is None or answer[0] >= 500:
            self._schedule(self._closes_due, lead_id, _RETRY_S)
        else:
            del self._tracked[lead_id]
