"""performance: weighted turns (see weighted) whose weight is the rep's measured conversion, so
better converters get proportionally more leads and nobody is starved.

weight = (won + prior_rate * prior_leads) / (closed + prior_leads), over the queue's last
window_days days of close outcomes (close.lua counts, per rep per day, the assigned leads closed and
those closed "won"; outcomes older than base.OUTCOME_DAYS are pruned as closes come in). The prior
is prior_leads imaginary closes at prior_rate: a new rep starts at prior_rate and still gets
leads, and a few lucky closes do not swing the share. The weight is read when the rep takes a lead
(one HMGET of 2 * window_days fields: O(window), not O(roster)), so today's results count at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from strategies import weighted
from strategies.base import (
    ANY_QUEUE,
    OUTCOME_DAYS,
    LeadView,
    Option,
    QueueView,
    RepState,
    Strategy,
    join_reason,
)

OPTIONS = {
    "window_days": Option(30, 1, OUTCOME_DAYS, "days of close outcomes the conversion counts"),
    "prior_rate": Option(0.2, 0.01, 1, "the conversion a rep is assumed to have before its own closes count"),
    "prior_leads": Option(10, 1, 1000, "how many closes the assumed conversion weighs as"),
}


def conversion(won: int, closed: int, options: Mapping[str, float]) -> float:
    """The rep's weight in performance queues, as lib.lua's conversion computes it."""
    prior_leads = options["prior_leads"]
    return (won + options["prior_rate"] * prior_leads) / (closed + prior_leads)


def window(options: Mapping[str, float]) -> int:
    return math.floor(options["window_days"])


def select(candidates: Sequence[RepState], lead: LeadView, queue: QueueView = ANY_QUEUE) -> RepState | None:
    return weighted.select(candidates, lead, queue)


def explain(facts: Mapping[str, Any]) -> str:
    won, closed, days = facts.get("won", 0), facts.get("closed", 0), facts.get("window_days", 0)
    rate = 100 * facts.get("weight", 0)
    return join_reason(f"performance: {won} won of {closed} closed in {days} days, {rate:.0f}% with the prior; "
                       f"{weighted.describe_turns(facts)}", facts)


STRATEGY = Strategy(
    name="performance",
    summary="Reps who convert better get proportionally more leads (won/closed over the last 30 days, with a "
            "prior so new reps still get some). For sales teams that track outcomes and reward closers.",
    order=("pass",),
    turn="conversion",
    select=select,
    explain=explain,
    options=OPTIONS,
)
