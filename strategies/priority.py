"""priority: the best-ranked rep with room takes the lead (rank from the rep's `rank` attribute,
higher is better), then the least loaded, then the longest idle. Which lead goes first is the wait
queue's job everywhere: highest priority, then oldest."""

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
    rank_key,
    utilization_key,
)


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return min(
        candidates,
        key=lambda rep: (rank_key(rep), utilization_key(rep), rep.last_assigned_ms, rep.id),
        default=None,
    )


def explain(facts: Mapping[str, Any]) -> str:
    rank = facts.get("rank")
    ranked = f"rank {rank:g}, " if isinstance(rank, (int, float)) else ""
    urgency = f"priority {facts['priority']} lead to " if "priority" in facts else ""
    return join_reason(f"priority: {urgency}the best-ranked rep with room, {ranked}{describe_load(facts)}", facts)


STRATEGY = Strategy(
    name="priority",
    summary="The best-ranked rep with room (the rep's `rank` attribute), then the least loaded. "
            "For high-value queues where your seniors should see the lead first.",
    order=("rank", "utilization", "last_assigned"),
    select=select,
    explain=explain,
)
