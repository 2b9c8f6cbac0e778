"""The policy: which selector a queue uses, and the whole pure decision (filters, then selector).
The routing file names strategies; this registry is the only place those names are resolved."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from strategies import load_aware, online_now, priority
from strategies.base import LeadView, RepState
from strategies.filters import PIPELINE, Moment

STRATEGIES: dict[str, ModuleType] = {module.NAME: module for module in (load_aware, online_now, priority)}
DEFAULT_STRATEGY = load_aware.NAME


def strategy(name: str) -> ModuleType:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}") from None


def choose(strategy_name: str, candidates: Sequence[RepState], lead: LeadView, moment: Moment) -> RepState | None:
    eligible: Sequence[RepState] = candidates
    for step in PIPELINE:
        eligible = step(eligible, lead, moment)
    return strategy(strategy_name).select(eligible, lead)


def explain(strategy_name: str, facts: dict) -> str:
    return strategy(strategy_name).explain(facts)
