"""random (module random_pick, so as not to shadow the standard library): a uniform draw among
the reps every filter lets through; never an ineligible one.

The step draws entries of the queue's ready index (ZRANGE by position, O(log n)) and takes the
first that can take the lead; a draw that meets one that cannot (a skill, a stale entry) draws
again, which keeps the draw uniform among the eligible. After RANDOM_DRAWS misses (most of the
ready reps cannot take this lead) it lists the eligible reps and draws among them: O(ready reps),
the one cost here that grows with the roster.

Randomness: Redis 6 reseeds Lua's math.random identically before every script, and Redis 7 seeds
it once at start, so its draws repeat after every restart. The step draws from SHA1 (redis.sha1hex)
of the server clock in microseconds and a per-queue draw counter instead: a fresh, uniform draw on
every decision on either version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies.base import ANY_QUEUE, LeadView, QueueView, RepState, Strategy, join_reason


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    """The model states eligibility, not the draw: the first eligible rep by id stands for them all
    (tests hold the Lua draw to lie among `candidates` and to be uniform over them)."""
    return min(candidates, key=lambda rep: rep.id, default=None)


def explain(facts: Mapping[str, Any]) -> str:
    ready = facts.get("ready")
    among = f" ({ready} in the queue's ready list)" if isinstance(ready, int) else ""
    return join_reason(f"random: a uniform draw among the reps who could take it{among}", facts)


STRATEGY = Strategy(
    name="random",
    summary="A fair draw among the reps who can take the lead now. A baseline that favours nobody, "
            "for comparing other strategies or spreading leads without any ranking.",
    order=(),
    walk="random",
    select=select,
    explain=explain,
)
