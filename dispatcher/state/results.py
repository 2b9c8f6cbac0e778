"""What the state steps answer, as plain values: a lead's decision, an assignment with its reason,
the outcome of a change, a routing change applied or refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, datetime
from typing import Any

import orjson

from strategies import policy


def iso_ms(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Assignment:
    lead_id: str
    rep_id: str
    queue: str
    strategy: str
    assigned_at_ms: int
    facts: Mapping[str, Any]
    accepted_at_ms: int
    reassigned: bool = False

    @classmethod
    def from_script(cls, row: Sequence[Any], *, reassigned: bool = False) -> Assignment:
        lead_id, rep_id, queue, strategy, assigned_at, facts, accepted_at = row
        return cls(lead_id, rep_id, queue, strategy, int(assigned_at), orjson.loads(facts), int(accepted_at), reassigned)

    @cached_property
    def reason(self) -> str:
        return policy.reason(self.queue, self.strategy, self.facts)

    @property
    def decision_event_id(self) -> str:
        """The event id of a lead's own decision, announced by the worker that decided it: a lead
        is decided once, so this names it on every replay. (Outbox events carry the entry id.)"""
        return f"decided:{self.lead_id}"

    def event(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "rep_id": self.rep_id,
            "queue": self.queue,
            "strategy": self.strategy,
            "reason": self.reason,
            "assigned_at": iso_ms(self.assigned_at_ms),
            "reassigned": self.reassigned,
        }


def lead_event(body: dict[str, Any], decided: Assignment | None = None) -> dict[str, Any]:
    """A lead event as published: the facts of an assignment become its reason in words. The
    'assigned' entry of a lead's own decision explains `decided`, whose reason is then reused."""
    if "facts" in body:
        facts = body.pop("facts")
        if decided is not None and body.get("event") == "assigned":
            body["reason"] = decided.reason
        elif body.get("queue") and body.get("strategy"):
            body["reason"] = policy.reason(body["queue"], body["strategy"], facts)
    return body


@dataclass(frozen=True)
class Decision:
    """kind: 'new' (decided now), 'replay' (the same delivery again), 'duplicate' (the id was
    decided from another delivery) or 'failed' (the step refused this lead: `error` says why; the
    lead belongs in the dead-letter topic). Only 'new' changed anything."""

    lead_id: str
    kind: str
    status: str
    queue: str
    assignment: Assignment | None = None
    error: str = ""
    # The decision's history entries as lead events (with event ids), for the caller to announce.
    lead_events: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What a close, presence, profile, reassign, claim, release or contact call did. `code` is 'ok',
    'not_found', 'forbidden', 'conflict' or 'unprocessable' (refused: `detail` says why in words); `assignments` are every lead that went to a
    rep as a result."""

    code: str
    detail: str = ""
    assignments: tuple[Assignment, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == "ok"


class RoutingRefused(ValueError):
    """A routing change that cannot be applied safely; `reasons` say why, in words."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True)
class RoutingChange:
    version: str
    applied: bool
    assignments: tuple[Assignment, ...] = ()
    rerouted: int = 0


@dataclass(frozen=True)
class DueMoved:
    """What one move_due step did: the assignments it made, how many holds ran out, how many leads
    overflowed, how many due entries it left for the next call (it takes a bounded batch), how many
    offers ran out or lost their rep, how many leads went to a claim pool, and the first-contact
    breaches as (queue, rep) pairs, one per breach."""

    assignments: tuple[Assignment, ...]
    holds_ended: int
    overflowed: int
    left: int
    offers_returned: int = 0
    pooled: int = 0
    breaches: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ShiftsApplied:
    """What one shift timer run did: the reps whose shift state it changed, as (rep, on shift) pairs,
    the assignments that made (drains, returned offers decided again), and whether reps were left
    due for the next run (it takes a bounded batch)."""

    changed: tuple[tuple[str, bool], ...]
    assignments: tuple[Assignment, ...]
    more: bool
