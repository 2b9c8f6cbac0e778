"""Eligibility filters, applied before a strategy's selector in FILTERS order, each strategy the
ones its declaration names. Static eligibility (teams, skill levels, attributes) is resolved into
queue membership ahead of time by the routing file; these are the filters that depend on the
moment or on the lead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from strategies.base import FILTERS, LeadView, RepState


@dataclass(frozen=True)
class Moment:
    now_ms: int
    presence_ttl_ms: int
    heartbeat_window_ms: int = 0


def present(candidates: Sequence[RepState], lead: LeadView, moment: Moment) -> list[RepState]:
    """Online and heard from within the presence TTL."""
    oldest = moment.now_ms - moment.presence_ttl_ms
    return [rep for rep in candidates if rep.status == "online" and rep.last_seen_ms >= oldest]


def recent(candidates: Sequence[RepState], lead: LeadView, moment: Moment) -> list[RepState]:
    """Heard from within the queue's stricter heartbeat window, where it has one."""
    if moment.heartbeat_window_ms <= 0:
        return list(candidates)
    oldest = moment.now_ms - moment.heartbeat_window_ms
    return [rep for rep in candidates if rep.last_seen_ms >= oldest]


def with_room(candidates: Sequence[RepState], lead: LeadView, moment: Moment) -> list[RepState]:
    return [rep for rep in candidates if rep.load < rep.capacity]


def with_skills(candidates: Sequence[RepState], lead: LeadView, moment: Moment) -> list[RepState]:
    """Every skill the lead asks for (any level: levels are a queue's static filter)."""
    return [rep for rep in candidates if all(skill in rep.skills for skill in lead.skills)]


Filter = Callable[[Sequence[RepState], LeadView, Moment], list[RepState]]
BY_NAME: dict[str, Filter] = {"present": present, "room": with_room, "recent": recent, "skills": with_skills}
assert tuple(BY_NAME) == FILTERS, "every filter a declaration may name has its function, in order"


def pipeline(names: Sequence[str]) -> tuple[Filter, ...]:
    """The filters a declaration names, in FILTERS order whatever order it names them in."""
    return tuple(BY_NAME[name] for name in FILTERS if name in names)
