"""Load forecasting: Holt's linear trend (double exponential smoothing), pure.

The level and the trend (per second) are updated from each new reading;
``forecast(h)`` extrapolates ``level + trend * h``, floored at zero. Missing
readings leave the state as it is. Readings may come at any spacing: the
trend is measured per second of the time between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HoltState:
    """:param level: smoothed value (NaN before the first reading).
    :param trend: smoothed change per second.
    :param time_s: time of the last reading."""

    level: float = math.nan
    trend: float = 0.0
    time_s: float = math.nan

    @property
    def ready(self) -> bool:
        return math.isfinite(self.level)

    def forecast(self, horizon_s: float, damping_s: float = math.inf) -> float:
        """The value expected ``horizon_s`` seconds after the last reading (NaN before any).

        With a finite ``damping_s`` the trend fades with that time constant (Gardner's damped trend in
        continuous time): it adds ``trend x damping_s x (1 - exp(-horizon / damping_s))``, never more than
        ``trend x damping_s``, so a short run-up is not extrapolated far.
        """
        if not self.ready:
            return math.nan
        h = max(0.0, horizon_s)
        reach = h if not math.isfinite(damping_s) else damping_s * (1.0 - math.exp(-h / damping_s))
        return max(0.0, self.level + self.trend * reach)


@dataclass(frozen=True)
class Holt:
    """Holt's method with smoothing factors for the level (``alpha``) and the trend (``beta``)."""

    alpha: float = 0.5
    beta: float = 0.3

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 <= self.beta <= 1):
            raise ValueError(f"need 0 < alpha <= 1 and 0 <= beta <= 1, got {self.alpha}, {self.beta}")

    def update(self, state: HoltState, value: float, now_s: float) -> HoltState:
        """The state after reading ``value`` at ``now_s`` (unchanged for a non-finite value)."""
        if not math.isfinite(value):
            return state
        if not state.ready:
            return HoltState(float(value), 0.0, now_s)
        dt = now_s - state.time_s
        if not dt > 0:
            return HoltState(state.level + self.alpha * (value - state.level), state.trend, state.time_s)
        predicted = state.level + state.trend * dt
        level = predicted + self.alpha * (value - predicted)
        trend = state.trend + self.beta * ((level - state.level) / dt - state.trend)
        return HoltState(level, trend, now_s)


@dataclass(frozen=True)
class Moments:
    """Exponentially weighted mean and variance with a time constant (seconds), for readings at any spacing.

    Each reading moves both by ``1 - exp(-dt / time_constant_s)``: the last ``time_constant_s`` seconds
    weigh most. ``mean + z * std`` is a level that a fleet must hold to serve what recurs within that time.
    """

    mean: float = math.nan
    var: float = 0.0
    time_s: float = math.nan

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def update(self, value: float, now_s: float, time_constant_s: float) -> Moments:
        if not math.isfinite(value):
            return self
        if not math.isfinite(self.mean):
            return Moments(float(value), 0.0, now_s)
        dt = now_s - self.time_s
        a = 1.0 - math.exp(-max(dt, 0.0) / time_constant_s) if time_constant_s > 0 else 1.0
        delta = value - self.mean
        mean = self.mean + a * delta
        var = (1.0 - a) * (self.var + a * delta * delta)
        return Moments(mean, var, now_s if dt > 0 else self.time_s)
