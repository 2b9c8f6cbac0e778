"""skills: the lead's skills as a score. A rep scores the sum of its levels (1..10) over the skills
the lead asks for; the best score wins, ties go to the least loaded, then to the rep idle longest.
A lead asking no skills goes to the least loaded rep, as in load_aware.

Cost: unlike the strategies that take the first eligible rep of the ready index, this one must
compare scores, so a decision reads eligible reps in index order (least loaded first) until one has
the highest possible score (10 x the skills asked) or `max_compared` of them were read, and takes
the best among those. Its cost grows with the queue's eligible reps up to that bound and no
further; a queue with more eligible reps than the bound gets the best score among the
`max_compared` least loaded of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import (
    LeadView,
    Option,
    QueueView,
    RepState,
    Strategy,
    describe_load,
    join_reason,
    utilization_key,
)

MAX_LEVEL = 10
DEFAULT_MAX_COMPARED = 100


def asked(lead: LeadView) -> list[str]:
    """The skills a lead asks for, each once, in the order it names them (a repeat scores once)."""
    return list(dict.fromkeys(lead.skills))


def score(rep: RepState, skills: Sequence[str]) -> int:
    return sum(rep.skills.get(skill, 0) for skill in skills)


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = QueueView()) -> RepState | None:
    skills = asked(lead)
    limit = int(queue.options.get("max_compared", DEFAULT_MAX_COMPARED))
    in_order = sorted(candidates, key=lambda rep: (utilization_key(rep), rep.last_assigned_ms, rep.id))
    compared = []
    for rep in in_order[:limit]:
        compared.append(rep)
        if score(rep, skills) == MAX_LEVEL * len(skills):
            break
    # max() keeps the first of equal scores: the least loaded, then the one idle longest.
    return max(compared, key=lambda rep: score(rep, skills), default=None)


def explain(facts: Mapping[str, Any]) -> str:
    levels = facts.get("levels") or []
    if not levels:
        head = "skills: the lead asks no skills, so the least loaded eligible rep"
    else:
        named = ", ".join(f"{skill} {level}" for skill, level in levels)
        compared = facts.get("compared", 1)
        among = f"best of {compared} eligible rep{'' if compared == 1 else 's'} compared"
        if facts.get("bounded"):
            among += f" (at most {compared} are compared)"
        head = f"skills: best score {facts.get('score', 0)} of {facts.get('top', 0)} ({named}), {among}"
    return join_reason(f"{head}, {describe_load(facts)}", facts)


STRATEGY = Strategy(
    name="skills",
    summary="The rep whose skill levels best fit the skills the lead asks for (sum of levels), then the "
            "least loaded. For product, language or industry queues where expertise matters most.",
    order=("utilization", "last_assigned"),
    walk="best_score",
    select=select,
    explain=explain,
    options={
        "max_compared": Option(DEFAULT_MAX_COMPARED, 1, 10_000,
                               "how many eligible reps one decision compares at most, least loaded first: "
                               "the bound on its cost", whole=True),
    },
)
