"""The policy: which selector a queue uses, and the whole pure decision (filters, then selector).
The routing file names strategies; this registry is the only place those names are resolved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from strategies import (
    load_aware,
    online_now,
    performance,
    pool,
    priority,
    random_pick,
    round_robin,
    skills,
    weighted,
)
from strategies.base import ANY_QUEUE, LeadView, QueueView, RepState, Strategy, _seconds, describe_load, join_reason
from strategies.filters import Moment, pipeline

STRATEGIES: dict[str, Strategy] = {
    module.STRATEGY.name: module.STRATEGY
    for module in (load_aware, online_now, priority, round_robin, weighted, random_pick, performance, skills, pool)
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
    """A decision's reason in full: the rule that chose the queue, the queues it overflowed through,
    and either its customer's last rep taking it back or the strategy's own words with its deciding
    figures (after saying why the last rep did not take it)."""
    hops = facts.get("overflowed") or []
    rule = facts.get("rule")
    first = hops[0]["from"] if hops else queue
    if rule == "default":
        parts = [f"no rule matched, so the default queue {first}"]
    else:
        # Leads decided before rules were recorded carry none.
        parts = [f"{rule} sent it to queue {first}" if rule else f"queue {first}"]
    for hop, onward in zip(hops, [*(h["from"] for h in hops[1:]), queue], strict=False):
        parts.append(f"nobody in queue {hop['from']} took it within {_seconds(hop['waited_ms'])}, "
                     f"so it overflowed to queue {onward}")
    if facts.get("sticky") == "owner":
        parts.append(join_reason(f"returning customer ({facts['customer']}): back to its last rep {facts['owner']}, "
                                 f"{describe_load(facts)}", facts))
        return "; ".join(parts)
    if facts.get("claimed_by"):
        # Whatever the strategy: a claim is the rep's own choice, not the strategy's.
        parts.append(pool.explain(facts))
        return "; ".join(parts)
    passed = facts.get("passed_over")
    if passed:
        held = f", held {_seconds(passed['held_ms'])} for it" if passed.get("held_ms") else ""
        parts.append(f"returning customer ({passed['customer']}): its last rep {passed['owner']} {passed['why']}{held}")
    parts.append(explain(strategy_name, facts))
    return "; ".join(parts)

