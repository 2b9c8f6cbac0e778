"""round_robin: the next rep in order after the one the queue served last, by rep id, wrapping.

The queue's state remembers only that rep (`cursor`), in Redis, so the rotation survives restarts
and every worker shares it. The ready index holds rep ids alone and the step walks it from just
after the cursor, then once more from the start up to the cursor itself: a rep that is away, full,
gone or lacks a skill is passed over without moving the rotation back; a rep added mid-rotation
takes its turn where its id falls; a close does not touch the cursor; a lead handed to a rep
because it freed room (a drain) or by a supervisor is not a turn and moves nothing. The cursor may
name a rep that has left: the walk starts after that id all the same. One decision costs one
ZRANGE per index and the entries it passes over, O(log n) when the next rep can take the lead.

Why the rep id and not a remembered list: a list would need rewriting on every roster change and
could drift from the membership; an order by id needs nothing but the one field, and a new rep
neither resets the rotation nor waits a full round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import ANY_QUEUE, LeadView, QueueView, RepState, Strategy, join_reason


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    cursor = queue.state.get("cursor")
    ordered = sorted(candidates, key=lambda rep: rep.id)
    after = [rep for rep in ordered if cursor is None or rep.id > cursor]
    return (after or ordered or [None])[0]


def explain(facts: Mapping[str, Any]) -> str:
    after = facts.get("after")
    turn = f"next in turn after {after}" if after else "first turn of the rotation"
    return join_reason(f"round robin: {turn}", facts)


STRATEGY = Strategy(
    name="round_robin",
    summary="Each rep in turn, by rep id, skipping reps who are away, full or lack a skill; the rotation keeps "
            "its place through restarts and roster changes. For equal teams that should get equal counts.",
    order=(),
    walk="cycle",
    select=select,
    explain=explain,
)
