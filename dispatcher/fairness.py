"""How evenly a queue's leads went round its reps: the figures, pure, and the window a caller may ask for.

The assignment log (Keys.assignment_log) keeps every assignment for DISPATCHER_FAIRNESS_RETENTION_S;
reads.py counts a window of it per queue and rep, and these functions turn the counts into figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from dispatcher.models import BadInput


def gini(counts: Sequence[int]) -> float:
    """0 when every rep got as many leads as every other (or none got any), towards 1 the more one
    rep got of them all: one rep with every lead among n gives (n - 1) / n. Computed on integers
    from the sorted counts (2 * sum(i * x_i) - (n + 1) * sum(x)) / (n * sum(x)), so equal counts
    give exactly 0."""
    total, n = sum(counts), len(counts)
    if total == 0:
        return 0.0
    ranked = sum(rank * count for rank, count in enumerate(sorted(counts), start=1))
    return (2 * ranked - (n + 1) * total) / (n * total)


def spread(counts: Sequence[int]) -> int:
    """The most leads a rep got less the fewest (0 for no reps)."""
    return max(counts) - min(counts) if counts else 0


def window_s(raw: str | None, retention_s: int, default_s: int) -> int:
    """The window a caller asked for, in whole seconds, or BadInput saying why it cannot be had."""
    if raw is None:
        return default_s
    text = raw.strip()
    if not text.isdigit() or not text.isascii() or not text.strip("0"):
        raise BadInput(f"window_s must be a whole number of seconds above 0, not {raw[:40]!r}")
    # Past 15 digits it is past any retention, and int() of thousands of digits is refused or slow.
    if len(text) > 15 or int(text) > retention_s:
        raise BadInput(f"window_s {text[:40]} reaches past what the assignment log keeps: at most {retention_s} "
                       "(DISPATCHER_FAIRNESS_RETENTION_S)")
    return int(text)
