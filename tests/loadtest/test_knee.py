"""`make knee` (loadtest/knee.py): the verdicts, the knee and the sizing rule on hand-made steps. Its
tiny ladder end to end is in test_smoke_runs.py, beside the other tools' runs."""

from __future__ import annotations

from dataclasses import asdict

from loadtest.bench import Row
from loadtest.knee import Ladder, climb, cpu_line, sizing, step_holds, summarize, table, verdict

BUDGET = Ladder(p99_budget_ms=100.0)
# What each part of a hand-made step burns at any rate (cores) and what a lead costs it (ms).
IDLE = {"system": 0.05, "broker": 0.3, "redis": 0.02, "bench": 0.0}
COST = {"system": 0.5, "broker": 0.8, "redis": 0.1, "bench": 0.2}
# The share of a core each part's threads spend waiting for one.
WAITING = {"system": 0.25, "broker": 0.4, "redis": 0.1, "bench": 0.05}


def step(rate: int, *, attempt: int = 1, matched: int | None = None, send_rate: float | None = None,
         p99_ms: float | None = 20.0, late_ms: float = 3.0, system: str = "dispatcher") -> Row:
    """A step of 10 s paced at `rate`, its CPU as IDLE and COST say."""
    sent, window_s = rate * 10, 10.0
    row = Row(system, f"{rate}/s", "fresh", sent, sent if matched is None else matched,
              rate if send_rate is None else send_rate, p99_ms=p99_ms, round=attempt,
              extra={"pace_late_max_ms": late_ms, "cpu_window_s": window_s,
                     "cpu_s": {part: (IDLE[part] + rate * COST[part] / 1000) * window_s for part in IDLE},
                     "waiting_s": {part: WAITING[part] * window_s for part in IDLE}})
    row.extra["verdict"] = verdict(row, BUDGET)
    return row


def test_a_step_holds_only_with_nothing_lost_p99_within_budget_and_the_pace_kept():
    assert step(1000).extra["verdict"] == "held"
    assert step(1000, p99_ms=100.0).extra["verdict"] == "held", "the budget itself is within it"
    assert step(1000, p99_ms=100.1).extra["verdict"] == "slow"
    assert step(1000, matched=9999).extra["verdict"] == "lost"
    assert step(1000, send_rate=940.0).extra["verdict"] == "unpaced"
    assert step(1000, late_ms=150.0).extra["verdict"] == "unpaced"
    # The producer's shortfall is this side's fault: it is reported as such, not as the system's loss.
    assert step(1000, send_rate=500.0, matched=10, p99_ms=900.0).extra["verdict"] == "unpaced"


def test_the_knee_is_the_highest_rate_held_before_the_first_step_that_did_not():
    tried = [step(250), step(250, attempt=2), step(500), step(500, attempt=2), step(750, p99_ms=140.0), step(750, attempt=2, p99_ms=90.0),
             step(750, attempt=3, p99_ms=60.0), step(1000, p99_ms=300.0), step(1000, attempt=2, matched=1)]
    held, ended = climb(tried, tries=3)
    assert [(row.phase, row.round) for row in held] == [("250/s", 2), ("500/s", 2), ("750/s", 2)], \
        "two tries of three that hold hold the step, with the figures of the one whose p99 is the median of them"
    assert ended is not None and ended.phase == "1000/s" and ended.extra["verdict"] in ("slow", "lost")

    held, ended = climb([step(250), step(500, matched=1), step(750)], tries=1)
    assert [row.phase for row in held] == ["250/s"] and ended.phase == "500/s", "nothing above the first failure counts"
    assert climb([step(250), step(500)], tries=1)[1] is None, "a ladder held to its top ended by nothing"
    held, ended = climb([step(250, p99_ms=500.0)], tries=1)
    assert held == [] and ended.phase == "250/s", "a system that holds no step has no knee"


def test_a_step_holds_by_most_of_its_tries_and_neither_try_alone_decides_it():
    lucky = [step(750, p99_ms=150.0), step(750, attempt=2, p99_ms=80.0), step(750, attempt=3, p99_ms=130.0)]
    held, ended = climb(lucky, tries=3)
    assert held == [] and ended is not None, "one lucky try of three does not hold the step"
    assert ended.p99_ms == 150.0, "the failed tries' median stands for the step"
    unlucky = [step(750, p99_ms=150.0), step(750, attempt=2, p99_ms=80.0), step(750, attempt=3, p99_ms=70.0)]
    assert [row.p99_ms for row in climb(unlucky, tries=3)[0]] == [80.0], "one unlucky try of three does not end it"
    # Settled early: two alike of three leave the third untried.
    assert step_holds([step(750), step(750, attempt=2)], 3) is True
    assert step_holds([step(750, p99_ms=120.0), step(750, attempt=2, matched=1)], 3) is False
    assert step_holds([step(750), step(750, attempt=2, p99_ms=120.0)], 3) is None, "one each: a third try decides"
    assert step_holds([], 3) is None
    # With two tries, both must hold: one of two is not most of them.
    assert step_holds([step(750)], 2) is None
    assert step_holds([step(750), step(750, attempt=2, p99_ms=120.0)], 2) is False
    assert step_holds([step(750, p99_ms=120.0)], 1) is False


def test_a_ladder_that_ended_is_refined_between_its_knee_and_the_step_that_ended_it():
    ladder = Ladder(start=250, step=250, refine=50)
    assert ladder.refined_rates(500, 750) == (550, 600, 650, 700)
    assert ladder.refined_rates(None, 250) == (), "no knee, nothing to refine above"
    assert Ladder(refine=0).refined_rates(500, 750) == ()
    # The refined steps join the ladder's: the knee is the last held below the first that did not hold.
    held, ended = climb([step(250), step(500), step(750, p99_ms=150.0), step(550), step(600), step(650, p99_ms=120.0)],
                         tries=1)
    assert held[-1].phase == "600/s" and ended.phase == "650/s"


def test_the_roster_has_room_for_every_lead_of_the_ladder_its_refining_and_the_ratio_rounds():
    ladder = Ladder(start=250, step=250, top=500, seconds=10.0, warmup=100, retries=1, refine=50, ratio_rounds=3,
                    systems=("dispatcher", "aiokafka relay"), reps=2)
    plan = ladder.plan()
    ladder_leads = 2 * ((2500 + 100) + (5000 + 100) + 5 * (5000 + 100))
    assert plan.reps * plan.capacity >= ladder_leads + 3 * (10_000 + 100)
    assert not Ladder(systems=("dispatcher", "faust relay")).measures_ratio, "no aiokafka relay, no p99 ratio"
    assert Ladder(systems=("dispatcher", "aiokafka relay")).ratio_systems == ("dispatcher", "aiokafka relay")
    assert Ladder().ratio_systems == ("dispatcher", "aiokafka relay", "faust relay"), "the bare faust agent beside"
    assert Ladder(ratio_rounds=0).ratio_systems == ()


def test_the_cpu_line_separates_what_a_part_burns_idle_from_what_a_lead_costs():
    line = cpu_line([step(250), step(500), step(750)])
    for part in IDLE:
        assert round(line[part]["idle_cores"], 6) == IDLE[part] and round(line[part]["ms_per_lead"], 6) == COST[part]
    assert cpu_line([step(250)]) is None, "one held step has no slope"
    relay = [step(250), step(500)]
    for row in relay:
        row.extra["cpu_s"]["redis"] = 0.0
    assert cpu_line(relay)["redis"] is None, "a part that costs nothing a lead has no line"


def test_the_summary_has_each_knee_its_cpu_per_lead_the_issue_ratios_and_the_sizing():
    ladder = Ladder(start=250, step=250, top=1000, systems=("dispatcher", "faust relay", "aiokafka relay"))
    # Each step settled by two tries alike of three.
    rows = ([step(r, attempt=n) for r in (250, 500, 750) for n in (1, 2)]
            + [step(1000, p99_ms=120.0), step(1000, attempt=2, p99_ms=110.0)]
            + [step(r, attempt=n, system="faust relay") for r in (250, 500, 750, 1000) for n in (1, 2)]
            + [step(r, attempt=n, system="aiokafka relay", p99_ms=50.0) for r in (250, 500, 750, 1000) for n in (1, 2)])
    # The p99 ratio's own rounds, not the ladder's 1,000/s tries: per round 2.0, 3.0 and 1.2.
    ratio_rows = [step(1000, attempt=n, p99_ms=p99, system=name)
                  for n, (mine, theirs) in enumerate([(100.0, 50.0), (120.0, 40.0), (60.0, 50.0)], 1)
                  for name, p99 in (("dispatcher", mine), ("aiokafka relay", theirs))]
    summary = summarize(rows, ladder, ratio_rows)

    mine = summary["systems"]["dispatcher"]
    assert mine["knee_per_s"] == 750 and mine["p99_ms_at_knee"] == 20.0
    assert mine["ended_by"]["rate"] == 1000 and mine["ended_by"]["p99_ms"] == 120.0, \
        "the failed tries' median ends it (the higher of two)"
    # At the knee a lead carries its share of the idle use too: 0.05 cores / 750 leads/s = 0.067 ms.
    assert round(mine["cpu_ms_per_lead_at_knee"]["system"], 3) == 0.567
    assert summary["systems"]["faust relay"]["ended_by"] is None
    ratios = {ratio["ratio"]: ratio for ratio in summary["ratios"]}
    assert ratios["dispatcher knee / faust relay knee"]["value"] == 0.75
    assert ratios["dispatcher knee / faust relay knee"]["met"] is False
    p99_ratio = ratios["dispatcher p99 / aiokafka relay p99 at 1000/s"]
    assert p99_ratio["per_round"] == [2.0, 3.0, 1.2] and p99_ratio["value"] == 2.0, "the median of the rounds"
    assert "dispatcher p99 / aiokafka relay p99 at 1000/s" not in {
        ratio["ratio"] for ratio in summarize(rows, ladder)["ratios"]}, "no rounds of its own, no p99 ratio"
    assert "faust relay p99 / aiokafka relay p99 at 1000/s" not in ratios, "the faust relay ran no rounds"
    with_reference = ratio_rows + [step(1000, attempt=n, p99_ms=p99, system="faust relay")
                                   for n, p99 in enumerate([75.0, 80.0, 40.0], 1)]
    reference = summarize(rows, ladder, with_reference)["ratios"][-1]
    assert reference["ratio"] == "faust relay p99 / aiokafka relay p99 at 1000/s"
    assert reference["per_round"] == [1.5, 2.0, 0.8] and reference["value"] == 1.5 and reference["met"] is None
    printed_reference = table({**summarize(rows, ladder, with_reference), "ladder": asdict(ladder), "rows": [],
                               "ratio_rows": [], "records_written": 0, "others_cpu_share": 0.0})
    (line,) = [line for line in printed_reference.splitlines() if line.strip().startswith("faust relay p99 /")]
    assert line.split()[-5:] == ["1.50x", "for", "reference,", "no", "target"]
    assert "  ladders are not refined." in table({**summarize(rows, ladder), "ladder": {**asdict(ladder), "refine": 0},
                                                  "rows": [], "ratio_rows": [], "records_written": 0,
                                                  "others_cpu_share": 0.0})

    sized = summary["sizing"]
    assert sized["basis"] == "line through the held steps" and round(sized["worker_cpu_ms"], 6) == 0.5
    assert [size["leads_per_s"] for size in sized["rows"]] == [1000, 3000, 10000]
    # (0.7 - 0.05 idle) of a core at 0.5 ms a lead is 1,300/s, above the 750/s knee: the knee rules.
    assert [size["workers"] for size in sized["rows"]] == [2, 4, 14]
    printed = table({**summary, "ladder": asdict(ladder), "rows": [asdict(row) for row in rows],
                     "ratio_rows": [asdict(row) for row in ratio_rows], "records_written": 0, "others_cpu_share": 0.0})
    assert "a promotion of 3,000 leads/s needs 4 worker(s) and 8 partitions" in printed
    assert "dispatcher knee / faust relay knee" in printed and "MISSED" in printed
    step_line = next(line for line in printed.splitlines() if line.startswith("dispatcher") and " 750 " in line)
    after_rounds = printed.split("the p99 ratio's rounds at 1000/s")[1]
    assert [line.split()[-8] for line in after_rounds.splitlines()[1:7]] == ["100.0", "50.0", "120.0", "40.0", "60.0", "50.0"]
    assert step_line.split()[-1] == "0.25", "the waits column is the system's share of a core spent waiting"

    alone = summarize([step(250)], Ladder(systems=("dispatcher",), retries=0))["sizing"]
    assert alone["basis"] == "CPU per lead at the knee" and round(alone["worker_cpu_ms"], 3) == 0.7


def test_sizing_plans_a_worker_at_the_lower_of_its_knee_and_its_core_headroom():
    # 0.5 ms a lead: 70% of a core is 1,400/s, above the 1,000/s knee measured, so the knee rules.
    assert sizing(3000, worker_cpu_ms=0.5, worker_knee=1000).workers == 3
    # 1 ms a lead and 0.2 of a core idle: 500/s, below the knee.
    size = sizing(3000, worker_cpu_ms=1.0, worker_knee=1000, worker_idle_cores=0.2, redis_cpu_ms=0.1,
                  redis_idle_cores=0.01)
    assert size.per_worker_per_s == 500 and size.workers == 6
    assert size.partitions == 12, "two per worker, a multiple of the workers"
    assert round(size.redis_cores, 2) == 0.36, "each worker's idle load on Redis, plus the leads'"
    assert sizing(500, worker_cpu_ms=1.0, worker_knee=1000).partitions == 4, "never fewer than the default"
    assert sizing(10000, worker_cpu_ms=0.5, worker_knee=1000).partitions == 20
