"""weighted: reps take turns in proportion to their `weight` attribute (1:2 gives a third and two
thirds), smoothly, never in bursts.

Stride scheduling (base.TURNS): each rep has a pass per queue, the ready index is ordered by pass
(ties by rep id), the lowest pass takes the lead and its pass grows by PASS_SCALE / weight. With
weights 1 and 2 over 5 leads the reps get 2 and 3, over 3N leads exactly N and 2N, and the weight-1
rep never gets two in a row. A rep entering the index (online again, room freed, joining) starts
at the virtual time of the lead channels it takes, the pass of the rep the channel's last turn went
to first, so time away earns no catch-up burst. Every lead the rep takes in the queue (a drain, a supervisor's move too) adds
to its pass: the pass measures service received. One decision costs what load_aware's does.

Chosen over "smooth weighted round robin" (nginx), which visits every rep on each pick: O(n) per
decision, against O(log n) here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import (
    ANY_QUEUE,
    PASS_SCALE,
    LeadView,
    QueueView,
    RepState,
    Strategy,
    join_reason,
    pass_of,
)


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return min(candidates, key=lambda rep: (pass_of(queue, rep.id, lead.channel), rep.id), default=None)


def describe_turns(facts: Mapping[str, Any]) -> str:
    served = facts.get("pass", 0) / PASS_SCALE
    return f"furthest behind its share among reps with room ({served:.2f} weighted leads served before this one)"


def explain(facts: Mapping[str, Any]) -> str:
    weight = facts.get("weight", 1)
    return join_reason(f"weighted: weight {weight:g}, {describe_turns(facts)}", facts)


STRATEGY = Strategy(
    name="weighted",
    summary="Reps share leads in proportion to their `weight` attribute (1 and 2: a third and two thirds), "
            "in smooth turns. For part-timers, trainees or seniors who should take a set share.",
    order=("pass",),
    turn="attribute",
    select=select,
    explain=explain,
)
