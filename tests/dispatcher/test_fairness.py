"""The fairness figures, pure: Gini and spread of assignments per rep, and the window a caller may ask for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.fairness import gini, spread, window_s
from dispatcher.models import BadInput
from dispatcher.settings import Settings

PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)
counts = st.lists(st.integers(0, 10_000), min_size=1, max_size=60)


@PROPERTIES
@given(st.integers(0, 10_000), st.integers(1, 200))
def test_equal_counts_give_exactly_zero(count, reps):
    assert gini([count] * reps) == 0.0
    assert spread([count] * reps) == 0


@PROPERTIES
@given(counts)
def test_gini_lies_in_zero_to_one_excluded(values):
    assert 0.0 <= gini(values) < 1.0


@PROPERTIES
@given(counts, st.integers(1, 1000))
def test_gini_is_scale_invariant(values, factor):
    assert gini([value * factor for value in values]) == pytest.approx(gini(values), abs=1e-12)


@PROPERTIES
@given(counts, st.randoms(use_true_random=False))
def test_gini_ignores_the_order_of_reps(values, rng):
    shuffled = list(values)
    rng.shuffle(shuffled)
    assert gini(shuffled) == gini(values)


@PROPERTIES
@given(st.integers(1, 10_000), st.integers(1, 200))
def test_one_rep_taking_all_of_n_reps_gives_n_minus_one_over_n(leads, reps):
    assert gini([leads] + [0] * (reps - 1)) == pytest.approx((reps - 1) / reps, abs=1e-12)
    assert spread([leads] + [0] * (reps - 1)) == (leads if reps > 1 else 0)


@PROPERTIES
@given(counts)
def test_gini_is_the_mean_absolute_difference_over_twice_the_mean(values):
    n, total = len(values), sum(values)
    expected = 0.0 if total == 0 else sum(abs(a - b) for a in values for b in values) / (2 * n * total)
    assert gini(values) == pytest.approx(expected, abs=1e-12)


def test_moving_a_lead_from_a_poorer_to_a_richer_rep_raises_gini():
    assert gini([5, 3, 2]) > gini([4, 4, 2]) > gini([4, 3, 3]) > gini([4, 4, 4]) == 0
    assert spread([5, 3, 2]) == 3 and spread([]) == 0 and gini([]) == 0.0


def test_no_assignments_is_even():
    assert gini([0, 0, 0]) == 0.0


@pytest.mark.parametrize(("raw", "expected"), [(None, 3600), ("60", 60), ("86400", 86400), (" 0120 ", 120)])
def test_a_whole_positive_window_within_the_retention_is_taken(raw, expected):
    assert window_s(raw, 86_400, 3600) == expected


@pytest.mark.parametrize(("raw", "words"), [
    ("0", "window_s must be a whole number of seconds above 0, not '0'"),
    ("-5", "not '-5'"),
    ("1.5", "not '1.5'"),
    ("", "not ''"),
    ("abc", "not 'abc'"),
    ("1e3", "not '1e3'"),
    ("٣", "not '٣'"),
    ("86401", "window_s 86401 reaches past what the assignment log keeps: at most 86400"),
    ("9" * 5000, "reaches past what the assignment log keeps: at most 86400"),
])
def test_a_bad_window_is_refused_in_words(raw, words):
    with pytest.raises(BadInput) as refused:
        window_s(raw, 86_400, 3600)
    assert words in str(refused.value)


def test_a_default_window_past_the_retention_is_refused_at_start_in_words():
    with pytest.raises(ValueError, match=r"DISPATCHER_FAIRNESS_WINDOW_S \(3600\) reaches past what the assignment "
                                         r"log keeps \(DISPATCHER_FAIRNESS_RETENTION_S, 600\)"):
        Settings(fairness_retention_s=600)
    assert Settings(fairness_retention_s=600, fairness_window_s=600).fairness_window_s == 600
