"""`make loadtest`: the promotion's shape. Its end-to-end run with a tiny promotion is in
test_smoke_runs.py, beside the other tools' runs."""

from __future__ import annotations

from loadtest.shapes import PEAK_FACTOR, promotion_stages


def test_the_promotion_shape_ramps_to_ten_times_and_back():
    stages = promotion_stages(baseline_users=3, baseline_s=10, ramp_s=5, hold_s=60, cooldown_s=10)
    assert [stage.users for stage in stages] == [3, 3 * PEAK_FACTOR, 3 * PEAK_FACTOR, 3]
    assert [stage.until_s for stage in stages] == [10, 15, 75, 85]
    assert stages[1].spawn_rate * 5 >= 3 * PEAK_FACTOR - 3, "the peak is reached within the ramp"
