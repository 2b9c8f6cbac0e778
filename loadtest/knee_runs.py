"""What several runs of the knee say together.

One ladder's knee moves by a third between runs of the same code on the 2-core development machine
(docs/benchmarks.md, section 5), and either ratio of the issue moves with it, so a single run of
`make knee` can land on either side of a target's line. This reads the summaries the runs saved
(`loadtest/results/knee-*.json`) and prints:

  per run       its knees, the knee ratio and the p99 ratio at 1,000/s (each the run's own figure,
                as `make knee` printed it), the bare faust agent's p99 ratio beside;
  together      for each ratio, how many runs met its target and the median of the runs' figures;
                the p99 ratio over every round of every run pooled, the bare faust agent's pooled
                beside it, and in how many rounds the dispatcher's p99 was the lower of the two
                (both are divided by the same relay round, so their ratios compare directly);
  sizing        the sizing rule's answers (knee.sizing) of the run whose one-worker knee was the
                lowest: a promotion sized by a lucky run would not hold.

    python -m loadtest.knee_runs loadtest/results/knee-*.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from loadtest.knee import KNEE_RATIO, P99_RATIO, REFERENCE_RATIO, sizing_lines


class NotAKneeRun(ValueError):
    """A file that is not a summary `make knee` saved; says which and why."""


def load(path: Path) -> dict:
    try:
        run = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise NotAKneeRun(f"{path}: cannot be read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise NotAKneeRun(f"{path}: not JSON ({exc})") from None
    if not isinstance(run, dict) or not isinstance(run.get("systems"), dict) or not isinstance(run.get("ratios"), list):
        raise NotAKneeRun(f"{path}: not a knee summary (no 'systems' and 'ratios'; `make knee` writes knee-*.json)")
    if not all(isinstance(found, dict) for found in [*run["systems"].values(), *run["ratios"]]):
        raise NotAKneeRun(f"{path}: not a knee summary (each system and each ratio must be an object)")
    return run


def _ratio(run: dict, name: str) -> dict | None:
    return next((ratio for ratio in run["ratios"] if ratio.get("ratio") == name), None)


def _rounds(ratio: dict | None) -> list[float | None]:
    if ratio is None:
        return []
    return ratio["per_round"] if ratio.get("per_round") else [ratio.get("value")]


def _knee(run: dict, system: str) -> int | None:
    return (run["systems"].get(system) or {}).get("knee_per_s")


def together(runs: Sequence[dict]) -> dict:
    """Each run's figures, then what they say together (see the module's docstring)."""
    per_run = [{"when": run.get("when", "?"), "dispatcher_knee": _knee(run, "dispatcher"),
                "faust_knee": _knee(run, "faust relay"),
                **{key: _ratio(run, name) for key, name in (("knee_ratio", KNEE_RATIO), ("p99_ratio", P99_RATIO),
                                                            ("reference_ratio", REFERENCE_RATIO))}}
               for run in runs]
    targets = {}
    for key, name in (("knee_ratio", KNEE_RATIO), ("p99_ratio", P99_RATIO)):
        figures = [run[key] for run in per_run if run[key] and run[key].get("value") is not None]
        targets[name] = {"runs": len(figures), "met": sum(bool(figure["met"]) for figure in figures),
                         "target": figures[0]["target"] if figures else None,
                         "median": statistics.median(figure["value"] for figure in figures) if figures else None}
    mine, reference, compared, lower = [], [], 0, 0
    for run in per_run:
        own, theirs = _rounds(run["p99_ratio"]), _rounds(run["reference_ratio"])
        mine += [value for value in own if value is not None]
        reference += [value for value in theirs if value is not None]
        both = [(a, b) for a, b in zip(own, theirs) if a is not None and b is not None]
        compared += len(both)
        lower += sum(a < b for a, b in both)
    pooled = {"rounds": len(mine), "median": statistics.median(mine) if mine else None,
              "reference_rounds": len(reference), "reference_median": statistics.median(reference) if reference else None,
              "rounds_compared": compared, "dispatcher_lower": lower}
    sized = None
    knees = [run for run in runs if _knee(run, "dispatcher") and run.get("sizing")]
    if knees:
        lowest = min(knees, key=lambda run: _knee(run, "dispatcher"))
        sized = {"when": lowest.get("when", "?"), **lowest["sizing"]}
    return {"per_run": per_run, "targets": targets, "pooled": pooled, "sizing": sized}


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(result: dict) -> str:
    lines = [f"{'run':<20} {'knees: dispatcher / faust':>26} {'knee ratio':>11} {'p99 ratio':>10} {'faust p99 ratio':>16}"]
    for run in result["per_run"]:
        knees = f"{run['dispatcher_knee'] or '-'} / {run['faust_knee'] or '-'}"
        lines.append(f"{run['when']:<20} {knees:>26} {_x((run['knee_ratio'] or {}).get('value')):>11} "
                     f"{_x((run['p99_ratio'] or {}).get('value')):>10} {_x((run['reference_ratio'] or {}).get('value')):>16}")
    lines.append("")
    for name, target in result["targets"].items():
        if target["runs"]:
            lines.append(f"  {name:<48} met in {target['met']} of {target['runs']} run(s), "
                         f"median {_x(target['median'])} (target {target['target']})")
    pooled = result["pooled"]
    if pooled["rounds"]:
        lines.append(f"  {P99_RATIO}, every round pooled: median {_x(pooled['median'])} over {pooled['rounds']} rounds")
    if pooled["reference_rounds"]:
        lines.append(f"  {REFERENCE_RATIO}, pooled: median {_x(pooled['reference_median'])} over "
                     f"{pooled['reference_rounds']} rounds; the dispatcher's p99 the lower in "
                     f"{pooled['dispatcher_lower']} of {pooled['rounds_compared']} rounds run by both")
    sized = result["sizing"]
    if sized:
        lines.append(f"\n  sizing from the lowest one-worker knee ({sized['worker_knee']:,}/s, the run of {sized['when']}; "
                     f"{sized['basis']}):")
        lines += sizing_lines(sized["rows"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", type=Path, help="knee-*.json files that `make knee` wrote")
    args = parser.parse_args(argv)
    try:
        runs = [load(path) for path in args.summaries]
    except NotAKneeRun as exc:
        parser.error(str(exc))
    print(table(together(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
