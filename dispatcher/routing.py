"""The routing file: which queues exist, who belongs to each, which strategy each uses, and the
ordered rules that send a lead to a queue (first match wins). Checked as a whole before it takes
effect; `dispatcher routing check FILE` runs the same check.

```yaml
channels: [web, chat, call, email, form, sms]
queues:
  enterprise: {strategy: priority, members: {teams: [enterprise]}}
  spanish:    {strategy: load_aware, members: {skills: {spanish: 5}}}
  promo:      {strategy: online_now, heartbeat_window_s: 10, overflow: {after_s: 30, to: general}}
  general:    {sticky: {field: customer_id, wait_s: 20}}
rules:
  - {name: big grade A, when: {attributes: {grade: A}, value_gte: 10000}, queue: enterprise}
  - {when: {skills: [spanish]}, queue: spanish}
  - {when: {attributes: {source: promo}}, queue: promo}
default_queue: general
```
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from strategies import policy

# The one name pattern for queues, teams, skills and channels; \Z because `$` admits a trailing newline.
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}\Z"
DEFAULT_CHANNELS = ("web", "chat", "call", "email", "form", "sms")
Scalar = str | int | float | bool


class RoutingError(ValueError):
    """The routing file cannot be used; the message says what is wrong and where, and `reasons`
    lists every problem found on its own."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons if reasons is not None else [message]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberFilter(_Strict):
    teams: list[str] = Field(default_factory=list, description="any of these teams")
    skills: dict[str, int] = Field(default_factory=dict, description="each skill at this level or above")
    attributes: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)


class Sticky(_Strict):
    # Rust regex (pydantic): `$` is the end of the text, as NAME_PATTERN's \Z is in Python.
    field: str = Field("customer_id", pattern=NAME_PATTERN.replace("\\Z", "$"),
                       description="the lead field naming the customer: a top-level field, else an attribute")
    wait_s: float = Field(0, ge=0, le=86_400, description="how long a lead waits for its last rep to be free")


class Overflow(_Strict):
    after_s: float = Field(gt=0, le=7 * 86_400, description="how long a lead waits here before it moves on")
    to: str = Field(description="the queue it moves to")


class Offer(_Strict):
    accept_timeout_s: float = Field(gt=0, le=86_400, description="how long the chosen rep has to accept before the lead moves on")
    away_after_timeouts: int = Field(0, ge=0, le=1000,
                                     description="a rep letting this many offers in a row time out is set away (0: never)")


class Pool(_Strict):
    after_s: float | None = Field(None, gt=0, le=7 * 86_400,
                                  description="how long a lead waits here before it goes to the queue's claim pool")
    max_claims_per_hour: int | None = Field(None, ge=1, le=10_000,
                                            description="how many of the pool's leads one rep may claim in an hour")


class Sla(_Strict):
    first_contact_s: float = Field(gt=0, le=30 * 86_400, description="how long a rep has to contact a lead it got")
    on_breach: Literal["pool", "reroute", "escalate"] = Field(
        description="where a lead its rep did not contact in time goes: the queue's claim pool, another rep of the "
                    "queue, or the queue escalate_to names")
    escalate_to: str | None = Field(None, description="the queue a breached lead escalates to (on_breach: escalate)")

    @model_validator(mode="after")
    def _target_when_escalating(self) -> Sla:
        if (self.on_breach == "escalate") != (self.escalate_to is not None):
            raise ValueError("escalate_to names the queue a breached lead escalates to: give it with "
                             "on_breach: escalate, and only then")
        return self


class QueueSpec(_Strict):
    strategy: str = policy.DEFAULT_STRATEGY
    members: MemberFilter = MemberFilter()
    heartbeat_window_s: float | None = Field(None, ge=0)
    sticky: Sticky | None = None
    overflow: Overflow | None = None
    offer: Offer | None = Field(None, description="offer each lead to the chosen rep, who accepts or rejects it")
    pool: Pool | None = None
    sla: Sla | None = None
    options: dict[str, float] = Field(default_factory=dict, description="the strategy's own options")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d\Z"


class Condition(_Strict):
    channel: str | list[str] | None = None
    priority_gte: int | None = Field(None, ge=0, le=9)
    priority_lte: int | None = Field(None, ge=0, le=9)
    value_gte: float | None = Field(None, ge=0)
    value_lt: float | None = Field(None, gt=0, description="a lead without a value counts as 0")
    skills: list[str] = Field(default_factory=list, description="the lead asks for all of these")
    attributes: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, description="the day it is in the file's timezone, when the lead is routed")
    hours: str | None = Field(None, description='"09:00-18:00", start included, end not; "22:00-06:00" spans midnight')

    @field_validator("hours")
    @classmethod
    def _hours_in_words(cls, hours: str | None) -> str | None:
        if hours is not None and not re.match(HOURS_PATTERN, hours):
            raise ValueError(f'{hours!r} is not a span of 24-hour times such as "09:00-18:00"')
        return hours

    def in_time(self, now: datetime) -> bool:
        if self.weekdays and WEEKDAYS[now.weekday()] not in self.weekdays:
            return False
        if self.hours is None:
            return True
        start, end = self.hours.split("-")
        clock = now.strftime("%H:%M")
        return start <= clock < end if start <= end else (clock >= start or clock < end)


class Rule(_Strict):
    name: str | None = Field(None, min_length=1, max_length=64, description="how reasons name the rule")
    when: Condition = Condition()
    queue: str


class RoutingFile(_Strict):
    channels: list[str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS), min_length=1)
    queues: dict[str, QueueSpec] = Field(default_factory=lambda: {"default": QueueSpec()}, min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    default_queue: str | None = None
    # The clock the rules' weekdays and hours read (an IANA name: Europe/Berlin, Asia/Shanghai).
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _consistent(self) -> RoutingFile:
        problems = []
        for kind, names in (("queue", self.queues), ("channel", self.channels)):
            problems += [f"{kind} name {name!r} must be 1..64 of [A-Za-z0-9_.-]"
                         for name in names if not re.match(NAME_PATTERN, name)]
        for name, spec in self.queues.items():
            try:
                declared = policy.strategy(spec.strategy)
            except ValueError as exc:
                problems.append(f"queue {name!r}: {exc}")
                continue
            problems += [f"queue {name!r}: {problem}" for problem in declared.check_options(spec.options)]
        problems += self._overflow_problems()
        for name, spec in self.queues.items():
            if spec.sla is not None and spec.sla.escalate_to is not None and spec.sla.escalate_to not in self.queues:
                problems.append(f"queue {name!r} escalates SLA breaches to queue {spec.sla.escalate_to!r}, "
                                "which is not defined")
        for index, rule in enumerate(self.rules, start=1):
            if rule.queue not in self.queues:
                problems.append(f"rule {index} sends leads to queue {rule.queue!r}, which is not defined")
            named = rule.when.channel if isinstance(rule.when.channel, list) else [rule.when.channel]
            # Leads on a channel the file does not route are refused before any rule runs.
            problems += [f"rule {index} names channel {channel!r}, which is not in channels "
                         f"({', '.join(self.channels)}), so no lead on it ever reaches the rule"
                         for channel in named if channel is not None and channel not in self.channels]
        if self.default_queue is not None and self.default_queue not in self.queues:
            problems.append(f"default_queue {self.default_queue!r} is not defined")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {self.timezone!r} is not a time zone name such as UTC or Europe/Berlin")
        if problems:
            # Every problem at once, one per line (_problems splits them), so a file is fixed in one go.
            raise ValueError("\n".join(problems))
        return self

    def _overflow_problems(self) -> list[str]:
        problems = []
        for name, spec in self.queues.items():
            if spec.overflow is None:
                continue
            if spec.overflow.to not in self.queues:
                problems.append(f"queue {name!r} overflows to queue {spec.overflow.to!r}, which is not defined")
                continue
            # A lead must move on a bounded number of times: a cycle would pass it round for ever.
            path, at = [name], spec.overflow.to
            while at not in path and at in self.queues and self.queues[at].overflow is not None:
                path.append(at)
                at = self.queues[at].overflow.to
            if at in path and path[0] == min(path[path.index(at):]):
                cycle = path[path.index(at):] + [at]
                problems.append(f"queues overflow in a circle ({' -> '.join(cycle)}); a lead would never settle")
        return problems


def _same(expected: Scalar, actual: Any) -> bool:
    # Python holds True == 1 == 1.0: a yes/no attribute must not match a count, while 1 and 1.0
    # are one number however the file or the JSON happened to write it.
    return expected == actual and isinstance(expected, bool) == isinstance(actual, bool)


def _matches(expected: Scalar | list[Scalar], actual: Any) -> bool:
    allowed = expected if isinstance(expected, list) else [expected]
    present = actual if isinstance(actual, list) else [actual]
    return any(_same(wanted, value) for value in present for wanted in allowed)


@dataclass(frozen=True)
class Queue:
    name: str
    strategy: str
    members: MemberFilter
    heartbeat_window_ms: int
    sticky: Sticky | None
    overflow: Overflow | None
    offer: Offer | None
    pool: Pool | None
    sla: Sla | None
    # The strategy's options, every one filled in (its declared defaults where the file is silent).
    options: Mapping[str, float]

    def admits(self, profile: Mapping[str, Any]) -> bool:
        wanted = self.members
        if wanted.teams and not set(wanted.teams) & set(profile.get("teams") or ()):
            return False
        skills = profile.get("skills") or {}
        if any(skills.get(skill, 0) < level for skill, level in wanted.skills.items()):
            return False
        attributes = profile.get("attributes") or {}
        return all(
            key in attributes and _matches(expected, attributes[key]) for key, expected in wanted.attributes.items()
        )

    def sticky_key(self, lead: Mapping[str, Any]) -> str:
        """Who the lead's customer is, as the queue's sticky option names it ("customer_id=c-42"),
        or "" when the queue is not sticky or the lead does not say."""
        if self.sticky is None:
            return ""
        name = self.sticky.field
        value = lead.get(name, (lead.get("attributes") or {}).get(name))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            return ""
        return f"{name}={value}"


@dataclass(frozen=True)
class Route:
    """Where a lead goes and why: its queue, the rule that chose it ("default" when none matched),
    and its customer for a sticky queue."""

    queue: str
    rule: str
    sticky_key: str = ""


class Routing:
    """A checked routing file, ready to match leads and to describe queues to the Lua scripts."""

    def __init__(self, spec: RoutingFile, source: str, text: str = "") -> None:
        self.spec = spec
        self.source = source
        self._zone = ZoneInfo(spec.timezone)
        # As written (YAML or JSON, comments kept): what people read back from GET /v1/routing.
        self.text = text
        self.channels: tuple[str, ...] = tuple(spec.channels)
        self.queues: tuple[Queue, ...] = tuple(self._queue(name, queue) for name, queue in spec.queues.items())
        self.by_name = {queue.name: queue for queue in self.queues}
        # Files without default_queue have always sent unmatched leads to the last queue (the
        # catch-all is usually written last); refusing or changing that would break them.
        self.default_queue = spec.default_queue or self.queues[-1].name
        self.fingerprint = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]

    @staticmethod
    def _queue(name: str, spec: QueueSpec) -> Queue:
        declared = policy.strategy(spec.strategy)
        window_s = spec.heartbeat_window_s if spec.heartbeat_window_s is not None else declared.heartbeat_window_s
        return Queue(name=name, strategy=spec.strategy, members=spec.members, heartbeat_window_ms=int(1000 * window_s),
                     sticky=spec.sticky, overflow=spec.overflow, offer=spec.offer, pool=spec.pool, sla=spec.sla,
                     options=declared.with_defaults(spec.options))

    def route(self, lead: Mapping[str, Any], now: datetime | None = None) -> Route:
        """First rule that matches, else the default queue. `now` is when the lead is routed (the
        clock by default), for rules on weekdays and hours."""
        moment = None
        chosen, rule_label = self.default_queue, "default"
        for number, rule in enumerate(self.spec.rules, start=1):
            if not self._rule_matches(rule.when, lead):
                continue
            if rule.when.weekdays or rule.when.hours is not None:
                moment = moment or (now or datetime.now(UTC)).astimezone(self._zone)
                if not rule.when.in_time(moment):
                    continue
            chosen, rule_label = rule.queue, f"rule {number} ({rule.name})" if rule.name else f"rule {number}"
            break
        return Route(chosen, rule_label, self.by_name[chosen].sticky_key(lead))

    def queue_for(self, lead: Mapping[str, Any], now: datetime | None = None) -> str:
        return self.route(lead, now).queue

    def queues_for(self, profile: Mapping[str, Any]) -> list[str]:
        return [queue.name for queue in self.queues if queue.admits(profile)]

    @staticmethod
    def _rule_matches(when: Condition, lead: Mapping[str, Any]) -> bool:
        if when.channel is not None and not _matches(when.channel, lead.get("channel", "web")):
            return False
        priority, value = lead.get("priority", 0), lead.get("value") or 0
        if when.priority_gte is not None and priority < when.priority_gte:
            return False
        if when.priority_lte is not None and priority > when.priority_lte:
            return False
        if when.value_gte is not None and value < when.value_gte:
            return False
        if when.value_lt is not None and value >= when.value_lt:
            return False
        if when.skills and not set(when.skills) <= set(lead.get("skills") or ()):
            return False
        attributes = lead.get("attributes") or {}
        return all(
            key in attributes and _matches(expected, attributes[key]) for key, expected in when.attributes.items()
        )


def _where(loc: tuple[int | str, ...]) -> str:
    # Pydantic counts list items from 0; people and the checks above call the first rule "rule 1".
    if len(loc) > 1 and loc[0] == "rules" and isinstance(loc[1], int):
        field = ".".join(str(part) for part in loc[2:])
        return f"rule {loc[1] + 1}, {field}" if field else f"rule {loc[1] + 1}"
    return ".".join(str(part) for part in loc)


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = _where(item["loc"])
        for message in item["msg"].removeprefix("Value error, ").splitlines():
            problems.append(f"{where}: {message}" if where else message)
    return problems


# The source of a routing put over HTTP; a worker's file never replaces it at start (agents.py).
API_SOURCE = "PUT /v1/routing"


def parse_routing(text: str, source: str) -> Routing:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingError(f"{source} is not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise RoutingError(f"{source} is nested too deeply to be a routing") from None
    if document is None:
        # An empty or comments-only file sets nothing, like `{}`: every field keeps its default,
        # which is the built-in routing.
        document = {}
    if not isinstance(document, dict):
        raise RoutingError(f"{source} must be a mapping with queues, rules, channels, default_queue")
    try:
        return Routing(RoutingFile.model_validate(document), source, text)
    except ValidationError as exc:
        problems = _problems(exc)
        raise RoutingError(f"{source}: {'; '.join(problems)}", problems) from None


def load_routing(path: Path | None, *, text: str | None = None) -> Routing:
    """The routing file at `path` (or `text`, already read from it), or the built-in default:
    one load-aware queue over all reps."""
    if path is None:
        return Routing(RoutingFile(), "built-in default")
    if text is None:
        text = _read(path)
    return parse_routing(text, str(path))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise RoutingError(f"cannot read routing file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RoutingError(f"routing file {path} is not UTF-8 text") from None


def yaml_says_nothing(text: str) -> bool:
    """Empty, blank or comments only: at start the built-in routing, but never a replacement."""
    try:
        return yaml.safe_load(text) is None
    except (yaml.YAMLError, RecursionError):
        return False  # parse_routing says what is wrong with it


async def read_routing_file(path: Path, *, last_seen: str | None = None, settle_s: float = 0.2) -> str | None:
    """The text of a routing file that replaces the routing in force: None while it is still being
    written (two reads `settle_s` apart differ; a text equal to `last_seen` needs no second read).
    An empty or comments-only file is refused here, where at start it means the built-in routing:
    an editor that has just emptied the file, or a copy cut short, must not send every lead to one
    catch-all queue."""
    first = _read(path)
    if first == last_seen:
        return first
    await asyncio.sleep(settle_s)
    if _read(path) != first:
        return None
    if yaml_says_nothing(first):
        raise RoutingError(f"routing file {path} is empty or holds only comments; a file that replaces the "
                           "routing in force must say what it routes")
    return first

