"""The policy: which selector a queue uses, and the whole pure decision (filters, then selector).
The routing file names strategies; this registry is the only place those names are resolved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies import load_aware, online_now, performance, priority, random_pick, round_robin, skills, weighted
from strategies.base import ANY_QUEUE, LeadView, QueueView, RepState, Strategy
from strategies.filters import Moment, pipeline

STRATEGIES: dict[str, Strategy] = {
    module.STRATEGY.name: module.STRATEGY
    for module in (load_aware, online_now, priority, round_robin, weighted, random_pick, performance, skills)
}
DEFAULT_STRATEGY = load_aware.STRATEGY.name


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}") from None


def choose(strategy_name: str, candidates: Sequence[RepState], lead: LeadView, moment: Moment,
           queue: QueueView = ANY_QUEUE) -> RepState | None:
    declared = strategy(strategy_name)
    eligible: Sequence[RepState] = candidates
    for step in pipeline(declared.filters):
        eligible = step(eligible, lead, moment)
    return declared.select(eligible, lead, queue)


def explain(strategy_name: str, facts: Mapping[str, Any]) -> str:
    return strategy(strategy_name).explain(facts)


def reason(queue: str, strategy_name: str, facts: Mapping[str, Any]) -> str:
    """A decision's reason in full: the rule that chose the queue, the queue, and the strategy's
    own words with its deciding figures."""
    rule = facts.get("rule")
    if rule == "default":
        routed = f"no rule matched, so the default queue {queue}"
    else:
        # Leads decided before rules were recorded carry none.
        routed = f"{rule} sent it to queue {queue}" if rule else f"queue {queue}"
    return f"{routed}; {explain(strategy_name, facts)}"
