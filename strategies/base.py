"""What every strategy shares: the plain data it sees and the one signature it implements.

A strategy is a small pure module with:
  NAME           how the routing file names it
  ORDER          the fields its ready index is sorted by, best first (see ORDER_CODES)
  HEARTBEAT_WINDOW_S   a stricter freshness filter for its queues (0 = the presence TTL only)
  select(candidates, lead) -> RepState | None    the same rule over plain data
  explain(facts) -> str                          why the chosen rep was chosen, in words

Redis keeps each queue's ready reps sorted by ORDER, so the atomic step takes the first rep that
passes the filters; `select` states that rule for tests, docs and the property test that checks
both paths agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# How an ORDER field is encoded in the ready index by lib.lua's member_for.
ORDER_CODES = {"utilization": "u", "last_assigned": "l", "rank": "r"}


@dataclass(frozen=True)
class RepState:
    id: str
    load: int
    capacity: int
    status: str = "online"
    last_seen_ms: int = 0
    last_assigned_ms: int = 0
    rank: float = 0.0
    skills: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadView:
    id: str
    channel: str = "web"
    priority: int = 0
    skills: tuple[str, ...] = ()


def utilization_key(rep: RepState) -> int:
    """Load over capacity in billionths, as the ready index stores it, so ties compare exactly."""
    return rep.load * 1_000_000_000 // rep.capacity


def rank_key(rep: RepState) -> int:
    """Higher rank sorts first; ranks are kept to a thousandth, as in the ready index."""
    return 1_000_000 - int(rep.rank * 1000)


def order_codes(order: tuple[str, ...]) -> str:
    return "".join(ORDER_CODES[name] for name in order)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def describe_context(facts: Mapping[str, Any]) -> str:
    """The part of a reason every strategy shares: how the lead reached the rep."""
    notes = []
    if facts.get("manual"):
        notes.append("moved by a supervisor")
    if facts.get("from_rep"):
        notes.append(f"re-routed away from {facts['from_rep']}")
    if facts.get("drained"):
        notes.append(f"waited {_seconds(facts.get('waited_ms', 0))} until this rep had room")
    if facts.get("skipped"):
        notes.append(f"{facts['skipped']} better-placed reps lacked a required skill or a fresh heartbeat")
    return "; ".join(notes)


def describe_load(facts: Mapping[str, Any]) -> str:
    load, capacity = facts.get("load", 0), facts.get("capacity", 0)
    share = f" ({100 * load // capacity}%)" if capacity else ""
    idle = facts.get("idle_ms")
    idle_text = f", idle {_seconds(idle)}" if isinstance(idle, (int, float)) else ", never assigned before"
    return f"{load} of {capacity} open before this lead{share}{idle_text}"


def join_reason(head: str, facts: Mapping[str, Any]) -> str:
    context = describe_context(facts)
    return f"{head}; {context}" if context else head
