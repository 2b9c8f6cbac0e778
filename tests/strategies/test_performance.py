"""performance's pure parts: the conversion weight with its prior, its options, its reason."""

from __future__ import annotations

import pytest

from dispatcher.routing import RoutingError, parse_routing
from strategies import performance
from strategies.base import OUTCOME_DAYS, Strategy

DEFAULTS = performance.STRATEGY.with_defaults({})


def test_declares_weighted_turns_by_conversion_with_its_options():
    assert performance.STRATEGY.order == ("pass",) and performance.STRATEGY.turn == "conversion"
    assert DEFAULTS == {"window_days": 30, "prior_rate": 0.2, "prior_leads": 10}
    assert performance.STRATEGY.options["window_days"].high == OUTCOME_DAYS
    assert performance.STRATEGY.walk == "first"


@pytest.mark.parametrize(("won", "closed", "weight"), [
    (0, 0, 0.2),     # a new rep: the prior alone
    (6, 10, 0.4),    # (6 + 2) / (10 + 10)
    (1, 10, 0.15),
    (0, 90, 0.02),
    (50, 50, 52 / 60),
])
def test_conversion_blends_the_reps_record_with_the_prior(won, closed, weight):
    assert performance.conversion(won, closed, DEFAULTS) == pytest.approx(weight)


def test_a_better_converter_weighs_more_and_a_new_rep_is_never_zero():
    good, new, poor = (performance.conversion(won, closed, DEFAULTS) for won, closed in ((6, 10), (0, 0), (1, 10)))
    assert good > new > poor
    assert performance.conversion(0, 1000, {"window_days": 30, "prior_rate": 0.01, "prior_leads": 1}) > 0


def test_a_conversion_turn_without_its_options_is_refused_at_import():
    with pytest.raises(ValueError, match="reads the options"):
        Strategy(name="x", summary="", order=("pass",), turn="conversion", select=performance.select,
                 explain=performance.explain)


def test_reason_names_won_closed_window_and_rate():
    facts = {"won": 6, "closed": 20, "window_days": 30, "weight": 8 / 30, "pass": 2_000_000}
    assert performance.explain(facts) == ("performance: 6 won of 20 closed in 30 days, 27% with the prior; "
                                          "furthest behind its share among reps with room "
                                          "(2.00 weighted leads served before this one)")


@pytest.mark.parametrize(("options", "problem"), [
    ("{window_days: 0}", "option window_days is 0; it must be 1..90"),
    ("{window_days: 91}", "option window_days is 91; it must be 1..90"),
    ("{prior_rate: 0}", "option prior_rate is 0; it must be 0.01..1"),
    ("{prior_leads: 0}", "option prior_leads is 0; it must be 1..1000"),
    ("{half_life: 3}", "strategy performance has no option 'half_life'"),
])
def test_bad_options_are_refused_in_words(options, problem):
    with pytest.raises(RoutingError, match=problem):
        parse_routing(f"queues:\n  perf: {{strategy: performance, options: {options}}}\n", "test")
