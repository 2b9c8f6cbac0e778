"""The promotion's timeline, separate from locust so it can be read and tested on its own."""

from __future__ import annotations

from dataclasses import dataclass

PEAK_FACTOR = 10


@dataclass(frozen=True)
class Stage:
    until_s: float
    users: int
    spawn_rate: float


def promotion_stages(*, baseline_users: int, baseline_s: float, ramp_s: float, hold_s: float,
                     cooldown_s: float, fixed_users: int = 0) -> tuple[Stage, ...]:
    """Baseline, a steep ramp to PEAK_FACTOR x the baseline (spawned within the ramp), a hold at
    the peak, then back to the baseline. `fixed_users` (the reps) stand beside the lead users
    throughout and all come in the first second: spawned at the baseline's own rate, 100 reps
    took the whole baseline and more, and the peak came late and short."""
    peak = baseline_users * PEAK_FACTOR
    ramp_rate = max(1.0, (peak - baseline_users) / max(ramp_s, 0.1))
    return (
        Stage(baseline_s, baseline_users + fixed_users, float(baseline_users + fixed_users)),
        Stage(baseline_s + ramp_s, peak + fixed_users, ramp_rate),
        Stage(baseline_s + ramp_s + hold_s, peak + fixed_users, ramp_rate),
        Stage(baseline_s + ramp_s + hold_s + cooldown_s, baseline_users + fixed_users, ramp_rate),
    )
