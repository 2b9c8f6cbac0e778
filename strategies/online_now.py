"""online_now: only reps whose last heartbeat is within a short window (per queue, default 15 s),
longest idle first. For promotions, when presence that is a minute stale already costs leads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import (
    ANY_QUEUE,
    LeadView,
    QueueView,
    RepState,
    Strategy,
    describe_load,
    join_reason,
)


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return min(candidates, key=lambda rep: (rep.last_assigned_ms, rep.id), default=None)


def explain(facts: Mapping[str, Any]) -> str:
    return join_reason(f"online-now: idle longest among reps with a fresh heartbeat, {describe_load(facts)}", facts)


STRATEGY = Strategy(
    name="online_now",
    summary="Only reps heard from in the last few seconds, whoever has waited longest first. "
            "For promotions and chat bursts, when a rep who left a minute ago must not get leads.",
    order=("last_assigned",),
    select=select,
    explain=explain,
    heartbeat_window_s=15.0,
)
