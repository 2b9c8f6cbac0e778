"""load_aware (the default): the eligible rep with the lowest load relative to capacity; ties go
to the rep idle longest, so equal reps take turns instead of the first one filling up."""

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
    utilization_key,
)


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return min(candidates, key=lambda rep: (utilization_key(rep), rep.last_assigned_ms, rep.id), default=None)


def explain(facts: Mapping[str, Any]) -> str:
    return join_reason(f"load-aware: least loaded eligible rep, {describe_load(facts)}", facts)


STRATEGY = Strategy(
    name="load_aware",
    summary="The rep with the most spare room relative to capacity; ties go to whoever waited longest. "
            "The safe default: nobody drowns while others idle.",
    order=("utilization", "last_assigned"),
    select=select,
    explain=explain,
)
