"""Where `make bench` and `make loadtest` leave their figures: loadtest/results/ (not committed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_summary(kind: str, summary: dict) -> Path:
    """The summary as JSON under RESULTS, named by kind and the time of writing; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    return path


def report(kind: str, summary: dict, printed: str) -> None:
    """The end of a bench run: its table on stdout, its summary saved, where and how long."""
    print()
    print(printed)
    path = save_summary(kind, summary)
    print(f"\n  {summary['seconds']:.0f} s in all; figures written to {path}")
