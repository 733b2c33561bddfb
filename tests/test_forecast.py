"""Holt's linear trend on worked numbers."""

from __future__ import annotations

import math

import pytest

from controller.forecast import Holt, HoltState


def test_level_and_trend_on_worked_numbers():
    """alpha 0.5, beta 0.3; readings 10, 12, 14 at t = 0, 15, 30 s.

    t=15: predicted 10, level 10 + 0.5 (12 - 10) = 11, trend 0 + 0.3 ((11 - 10) / 15 - 0) = 0.02 /s
    t=30: predicted 11 + 0.02 x 15 = 11.3, level 11.3 + 0.5 (14 - 11.3) = 12.65,
          trend 0.02 + 0.3 ((12.65 - 11) / 15 - 0.02) = 0.047 /s; 100 s ahead: 12.65 + 4.7 = 17.35
    """
    holt, state = Holt(0.5, 0.3), HoltState()
    for t, value in ((0, 10.0), (15, 12.0), (30, 14.0)):
        state = holt.update(state, value, t)
    assert state.level == pytest.approx(12.65) and state.trend == pytest.approx(0.047)
    assert state.forecast(100) == pytest.approx(17.35)


def test_before_any_reading_there_is_no_forecast_and_missing_readings_change_nothing():
    holt = Holt()
    assert math.isnan(HoltState().forecast(60))
    state = holt.update(HoltState(), 5.0, 0)
    assert holt.update(state, math.nan, 15) == state and holt.update(state, math.inf, 15) == state


def test_a_falling_trend_never_forecasts_below_zero():
    holt, state = Holt(1.0, 1.0), HoltState()
    state = holt.update(holt.update(state, 10.0, 0), 2.0, 10)
    assert state.trend == pytest.approx(-0.8) and state.forecast(100) == 0.0


def test_a_repeated_time_only_moves_the_level():
    holt = Holt(0.5, 0.3)
    state = holt.update(holt.update(HoltState(), 10.0, 0), 20.0, 0)
    assert (state.level, state.trend, state.time_s) == (15.0, 0.0, 0)


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.1), (1.5, 0.1), (0.5, -0.1)])
def test_bad_smoothing_factors(alpha, beta):
    with pytest.raises(ValueError, match="alpha"):
        Holt(alpha, beta)
