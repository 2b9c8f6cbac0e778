"""loadtest/knee_runs.py: several knee runs read together, from summaries made by knee.summarize
out of hand-made steps and saved as `make knee` saves them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadtest.knee import Ladder, summarize
from loadtest.knee_runs import main, together
from tests.loadtest.test_knee import step

LADDER = Ladder(start=250, step=250, top=1000, systems=("dispatcher", "faust relay", "aiokafka relay"))


def knee_run(*, dispatcher_knee: int = 750, faust_knee: int = 750, rounds: tuple[tuple[float, float, float], ...] =
             ((100.0, 50.0, 110.0), (60.0, 50.0, 70.0), (90.0, 60.0, 60.0)), when: str = "2026-12-02 01:00:00") -> dict:
    """A run's summary: each system holds every step up to its knee and is slow above it (the
    aiokafka relay holds the top); `rounds` are the p99 ratio's rounds at 1,000/s, (dispatcher,
    aiokafka relay, faust relay) p99 each."""
    def climb(system: str, knee: int) -> list:
        return [step(rate, attempt=n, system=system, p99_ms=20.0 if rate <= knee else 150.0)
                for rate in range(250, 1001, 250) for n in (1, 2)]

    rows = climb("dispatcher", dispatcher_knee) + climb("faust relay", faust_knee) + climb("aiokafka relay", 1000)
    ratio_rows = [step(1000, attempt=n, p99_ms=p99, system=name)
                  for n, figures in enumerate(rounds, 1)
                  for name, p99 in zip(("dispatcher", "aiokafka relay", "faust relay"), figures)]
    return {**summarize(rows, LADDER, ratio_rows), "when": when}


def test_each_run_keeps_its_own_verdicts_and_together_they_give_counts_medians_and_pooled_rounds():
    runs = [knee_run(dispatcher_knee=500, faust_knee=750, when="first"),  # 0.67x; p99 rounds 2.0, 1.2, 1.5
            knee_run(rounds=((70.0, 50.0, 80.0), (140.0, 70.0, 105.0)), when="second"),  # 1.00x; rounds 1.4, 2.0
            knee_run(dispatcher_knee=1000, faust_knee=750, rounds=((60.0, 60.0, 90.0),), when="third")]  # 1.33x; 1.0
    result = together(runs)

    assert [(run["when"], run["dispatcher_knee"], run["faust_knee"]) for run in result["per_run"]] == \
        [("first", 500, 750), ("second", 750, 750), ("third", 1000, 750)]
    assert [round(run["p99_ratio"]["value"], 2) for run in result["per_run"]] == [1.5, 1.7, 1.0], \
        "each run's p99 ratio is the median of its own rounds, as `make knee` printed it"
    knee_ratio, p99_ratio = result["targets"].values()
    assert (knee_ratio["met"], knee_ratio["runs"], knee_ratio["median"]) == (2, 3, 1.0)
    assert (p99_ratio["met"], p99_ratio["runs"], round(p99_ratio["median"], 2)) == (2, 3, 1.5)

    pooled = result["pooled"]
    # Every round of every run: 2.0, 1.2, 1.5, 1.4, 2.0, 1.0; the faust agent's 2.2, 1.4, 1.0, 1.6, 1.5, 1.5.
    assert pooled["rounds"] == 6 and round(pooled["median"], 2) == 1.45
    assert pooled["reference_rounds"] == 6 and round(pooled["reference_median"], 2) == 1.5
    assert (pooled["dispatcher_lower"], pooled["rounds_compared"]) == (4, 6), \
        "the rounds where the dispatcher's p99 was below the faust agent's, the same relay round dividing both"

    sized = result["sizing"]
    assert sized["when"] == "first" and sized["worker_knee"] == 500, "sized by the lowest one-worker knee, not a lucky run"
    assert sized["rows"] == runs[0]["sizing"]["rows"]


def test_the_runs_are_read_from_the_files_make_knee_saved_and_printed_together(tmp_path: Path, capsys):
    paths = []
    for n, run in enumerate([knee_run(when="first"), knee_run(dispatcher_knee=500, when="second")]):
        paths.append(tmp_path / f"knee-{n}.json")
        paths[-1].write_bytes(orjson.dumps(run))

    assert main([str(path) for path in paths]) == 0
    printed = capsys.readouterr().out
    assert "dispatcher knee / faust relay knee               met in 1 of 2 run(s), median 0.83x (target >=0.9x)" in printed
    assert "the dispatcher's p99 the lower in 4 of 6 rounds run by both" in printed
    assert "sizing from the lowest one-worker knee (500/s, the run of second;" in printed
    assert "a promotion of 1,000 leads/s needs 2 worker(s) and 4 partitions (500/s a worker" in printed


@pytest.mark.parametrize("content, words", [
    (b"{not json", "not JSON"),
    (b'{"rows": []}', "not a knee summary"),
    (b"[1, 2]", "not a knee summary"),
    (b'{"systems": {"dispatcher": 750}, "ratios": []}', "not a knee summary (each system and each ratio"),
    (b'{"systems": {}, "ratios": ["1.2x"]}', "not a knee summary (each system and each ratio"),
])
def test_a_file_that_is_not_a_knee_summary_is_refused_in_words_and_nothing_is_printed(tmp_path: Path, capsys,
                                                                                        content: bytes, words: str):
    good, bad = tmp_path / "knee-good.json", tmp_path / "knee-bad.json"
    good.write_bytes(orjson.dumps(knee_run()))
    bad.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        main([str(good), str(bad)])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{bad}: {words}" in err


def test_a_missing_file_is_named(tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "knee-gone.json")])
    assert "knee-gone.json: cannot be read (No such file or directory)" in capsys.readouterr().err
