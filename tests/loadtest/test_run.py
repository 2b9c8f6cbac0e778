"""`make loadtest`: the promotion's shape. Its end-to-end run with a tiny promotion is in
test_smoke_runs.py, beside the other tools' runs."""

from __future__ import annotations

from loadtest.shapes import PEAK_FACTOR, promotion_stages


def test_the_promotion_shape_ramps_to_ten_times_and_back():
    stages = promotion_stages(baseline_users=3, baseline_s=10, ramp_s=5, hold_s=60, cooldown_s=10)
    assert [stage.users for stage in stages] == [3, 3 * PEAK_FACTOR, 3 * PEAK_FACTOR, 3]
    assert [stage.until_s for stage in stages] == [10, 15, 75, 85]
    assert stages[1].spawn_rate * 5 >= 3 * PEAK_FACTOR - 3, "the peak is reached within the ramp"


def test_the_reps_are_all_on_the_floor_in_the_first_second_and_the_ramp_keeps_its_pace():
    alone = promotion_stages(baseline_users=3, baseline_s=10, ramp_s=5, hold_s=60, cooldown_s=10)
    stages = promotion_stages(baseline_users=3, baseline_s=10, ramp_s=5, hold_s=60, cooldown_s=10, fixed_users=100)
    assert [stage.users for stage in stages] == [103, 130, 130, 103]
    assert stages[0].spawn_rate >= 103, "every rep and baseline user spawned within a second"
    assert [stage.spawn_rate for stage in stages[1:]] == [stage.spawn_rate for stage in alone[1:]]
