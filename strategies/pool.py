"""pool: no rep is picked; every lead goes straight to the queue's claim pool, where the queue's
reps claim it (POST /v1/pool/{id}/claim), first claim wins. For work reps choose for themselves
(公海池): the pool is never drained to anyone, so a lead stays there until claimed or closed.

Its walk ("pool") is the one that never walks: the step parks the lead in the queue's pool index
(priority, then age) at the cost of one ZADD, however many reps the queue has. A sticky pool queue
still hands a returning customer to its last rep first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import ANY_QUEUE, LeadView, QueueView, RepState, Strategy


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return None


def explain(facts: Mapping[str, Any]) -> str:
    pooled = f", pooled {facts['pooled_ms'] / 1000:.1f} s" if "pooled_ms" in facts else ""
    return f"claimed from the pool of queue {facts.get('pool_queue', '?')} by rep {facts.get('claimed_by', '?')}{pooled}"


STRATEGY = Strategy(
    name="pool",
    summary="Nobody is picked: every lead goes to the queue's claim pool and the queue's reps claim it, first "
            "claim wins. For leads reps choose for themselves (公海池), with an optional claims-per-hour limit.",
    order=(),
    walk="pool",
    select=select,
    explain=explain,
)
