"""What every strategy shares: the plain data it sees, the one signature it implements, and the
declaration the Lua side is built from.

A strategy is a small pure module that ends in one `STRATEGY = Strategy(...)` declaration:
  name      how the routing file names it
  summary   what it does and when to use it, in two lines a supervisor understands (README, docs)
  order     the fields its ready index is sorted by, best first (ORDER_CODES)
  walk      how the atomic step walks that index (WALKS)
  turn      what a lead given in the queue costs the rep (TURNS; with order "pass" only)
  filters   the eligibility filters it applies before its selector (strategies/filters.py)
  heartbeat_window_s  a stricter freshness filter for its queues (0 = the presence TTL only)
  options   the options a queue may give it in the routing file: name -> Option
  select    (candidates, lead, queue) -> RepState | None: the same rule over plain data
  explain   (facts) -> str: why the chosen rep was chosen, in words

Redis keeps each queue's ready reps sorted by `order`; the one Lua step per decision walks that
index as `walk` says and takes the first rep that passes `filters`. dispatcher/state/layout.py
turns every declaration into the Lua the scripts read (strategy_named), so the scripts hold no strategy of
their own; `select` is the model a property test holds the Lua step to (tests/dispatcher/state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# How an `order` field is encoded in the ready index by lib.lua's member_for. "pass" is the rep's
# weighted turns served in the queue (its pass in the queue's state HASH; see TURNS).
ORDER_CODES = {"utilization": "u", "last_assigned": "l", "rank": "r", "pass": "p"}
# How the Lua step walks a queue's ready index: from its best entry ("first"); from the entry after
# the rep served last, wrapping once ("cycle": the queue's state remembers that rep as `cursor`, so
# the entry must be the rep id alone, order ()); by uniform draws ("random"); or reading on, in
# order, for the best skill score ("best_score", strategies/skills.py); or not at all: the lead goes
# to the queue's claim pool ("pool", strategies/pool.py).
WALKS = ("first", "cycle", "random", "best_score", "pool")
# Stride scheduling: every lead a rep takes in the queue adds PASS_SCALE / weight to its pass, and
# the ready index is ordered by pass, so reps take turns in proportion to their weights. The weight
# is the rep's `weight` attribute ("attribute") or its conversion over a window with a prior
# ("conversion", from the options CONVERSION_OPTIONS). Passes stay integers (exact in Lua's doubles):
# a pass grows by at most PASS_SCALE / MIN_WEIGHT = 1e8 per lead, so 2^53 is some 9e7 leads to one
# rep at the smallest weight, and 9e9 at weight 1.
TURNS = ("attribute", "conversion")
CONVERSION_OPTIONS = ("window_days", "prior_rate", "prior_leads")
PASS_SCALE = 1_000_000
MIN_WEIGHT = 0.01
MAX_WEIGHT = 1000.0
# How many days of close outcomes close.lua keeps per rep: the longest conversion window allowed.
OUTCOME_DAYS = 90
# presence and room are the contract's invariants (only online reps with room get leads): every
# strategy applies them; recent and skills are each strategy's to declare.
FILTERS = ("present", "room", "recent", "skills")
REQUIRED_FILTERS = ("present", "room")


@dataclass(frozen=True)
class RepState:
    id: str
    load: int
    capacity: int
    status: str = "online"
    last_seen_ms: int = 0
    last_assigned_ms: int = 0
    rank: float = 0.0
    skills: Mapping[str, int] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class LeadView:
    id: str
    channel: str = "web"
    priority: int = 0
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueView:
    """What a selector may know of the queue beyond its candidates: its name, the options the
    routing file gives its strategy, and what the strategy remembers (the queue's state HASH as
    stored: `cursor`, `vt`, `pass|<rep>`)."""

    name: str = "default"
    options: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    default: float
    low: float
    high: float
    meaning: str
    # A count (of reps, of turns): a fraction is refused rather than rounded one way or the other.
    whole: bool = False


# What a selector sees of a queue when nothing about the queue matters to it (pure unit tests).
ANY_QUEUE = QueueView()

Selector = Callable[[Sequence[RepState], LeadView, QueueView], "RepState | None"]


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    order: tuple[str, ...]
    select: Selector
    explain: Callable[[Mapping[str, Any]], str]
    walk: str = "first"
    turn: str = ""
    filters: tuple[str, ...] = FILTERS
    heartbeat_window_s: float = 0.0
    options: Mapping[str, Option] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A declaration the scripts cannot honour must fail at import, not at the first lead.
        unknown = [name for name in self.order if name not in ORDER_CODES]
        if unknown or self.walk not in WALKS or not set(self.filters) <= set(FILTERS):
            raise ValueError(f"strategy {self.name}: order {self.order}, walk {self.walk!r} or filters "
                             f"{self.filters} name something the scripts do not know")
        if not set(REQUIRED_FILTERS) <= set(self.filters):
            raise ValueError(f"strategy {self.name} must apply {REQUIRED_FILTERS}: they are the contract's invariants")
        if ("pass" in self.order) != bool(self.turn) or (self.turn and self.turn not in TURNS):
            raise ValueError(f"strategy {self.name}: a pass order needs a turn of {TURNS} and a turn needs a pass "
                             f"order (order {self.order}, turn {self.turn!r})")
        if self.walk == "cycle" and self.order:
            raise ValueError(f"strategy {self.name}: a cycle walk resumes after a rep id, so its order must be ()")
        missing = [name for name in CONVERSION_OPTIONS if name not in self.options]
        if self.turn == "conversion" and missing:
            raise ValueError(f"strategy {self.name}: a conversion turn reads the options {missing}, not declared")

    @property
    def order_codes(self) -> str:
        return "".join(ORDER_CODES[name] for name in self.order)

    def check_options(self, given: Mapping[str, float]) -> list[str]:
        """What is wrong with a queue's options for this strategy, in words (empty: nothing)."""
        problems = []
        for name, value in given.items():
            option = self.options.get(name)
            if option is None:
                known = ", ".join(sorted(self.options)) or "none"
                problems.append(f"strategy {self.name} has no option {name!r} (its options: {known})")
            elif not option.low <= value <= option.high:
                problems.append(f"option {name} is {value:g}; it must be {option.low:g}..{option.high:g} ({option.meaning})")
            elif option.whole and value != int(value):
                problems.append(f"option {name} is {value:g}; it must be a whole number ({option.meaning})")
        return problems

    def with_defaults(self, given: Mapping[str, float]) -> dict[str, float]:
        return {name: given.get(name, option.default) for name, option in self.options.items()}


def utilization_key(rep: RepState) -> int:
    """Load over capacity in billionths, as the ready index stores it, so ties compare exactly."""
    return rep.load * 1_000_000_000 // rep.capacity


def stride(weight: float) -> int:
    """What one lead adds to a rep's pass, as lib.lua's take_turn computes it (same doubles)."""
    return math.floor(PASS_SCALE / max(weight, MIN_WEIGHT) + 0.5)


def pass_of(queue: QueueView, rep_id: str, channel: str) -> int:
    """The rep's place in the queue's weighted turns for a lead of `channel`: its pass, never behind
    that channel's virtual time (a rep entering the ready index starts there, so time away earns no
    burst of leads; lib.lua's catch_up says why each channel has its own)."""
    return max(int(queue.state.get(f"pass|{rep_id}", 0)), int(queue.state.get(f"vt|{channel}", 0)))


def rank_key(rep: RepState) -> int:
    """Higher rank sorts first; ranks are kept to a thousandth, as in the ready index."""
    return 1_000_000 - int(rep.rank * 1000)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def describe_context(facts: Mapping[str, Any]) -> str:
    """The part of a reason every strategy shares: how the lead reached the rep."""
    notes = []
    if facts.get("manual"):
        notes.append("moved by a supervisor")
    if facts.get("from_rep"):
        notes.append(f"re-routed away from {facts['from_rep']}")
    if facts.get("drained"):
        notes.append(f"waited {_seconds(facts.get('waited_ms', 0))} until this rep had room")
    if facts.get("skipped"):
        notes.append(f"{facts['skipped']} better-placed reps lacked a required skill or a fresh heartbeat")
    return "; ".join(notes)


def describe_load(facts: Mapping[str, Any]) -> str:
    load, capacity = facts.get("load", 0), facts.get("capacity", 0)
    share = f" ({100 * load // capacity}%)" if capacity else ""
    idle = facts.get("idle_ms")
    idle_text = f", idle {_seconds(idle)}" if isinstance(idle, (int, float)) else ", never assigned before"
    return f"{load} of {capacity} open before this lead{share}{idle_text}"


def join_reason(head: str, facts: Mapping[str, Any]) -> str:
    context = describe_context(facts)
    return f"{head}; {context}" if context else head
