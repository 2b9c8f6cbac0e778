"""online_now: only reps whose last heartbeat is within a short window (per queue, default 15 s),
longest idle first. For promotions, when presence that is a minute stale already costs leads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import LeadView, RepState, describe_load, join_reason

NAME = "online_now"
ORDER = ("last_assigned",)
HEARTBEAT_WINDOW_S = 15.0


def select(candidates: Sequence[RepState], lead: LeadView) -> RepState | None:
    return min(candidates, key=lambda rep: (rep.last_assigned_ms, rep.id), default=None)


def explain(facts: Mapping[str, Any]) -> str:
    return join_reason(f"online-now: idle longest among reps with a fresh heartbeat, {describe_load(facts)}", facts)
