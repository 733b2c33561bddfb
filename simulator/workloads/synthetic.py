"""A synthetic LLM service: a daily cycle, random bursts, token distributions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.workloads.patterns import poisson_arrivals
from simulator.workloads.tokens import TokenDistribution
from simulator.workloads.workload import Workload

DAY_S = 86400.0


@dataclass(frozen=True)
class SyntheticSpec:
    """:param mean_rate: mean request rate over a day (req/s).
    :param daily_amplitude: relative swing of the daily cycle (0..1); the peak is at ``peak_hour``.
    :param duration_s: simulated length; ``day_length_s`` compresses a whole day into that many seconds.
    :param bursts_per_hour: burst starts per simulated hour (Poisson).
    :param burst_height: range of the rate multiplier during a burst.
    :param burst_length_s: mean burst length (exponential).
    :param start_hour: wall-clock hour at t = 0."""

    mean_rate: float = 16.0
    daily_amplitude: float = 0.6
    peak_hour: float = 14.0
    duration_s: float = 3600.0
    day_length_s: float = 3600.0
    bursts_per_hour: float = 2.0
    burst_height: tuple[float, float] = (1.5, 2.5)
    burst_length_s: float = 120.0
    start_hour: float = 0.0
    tokens: TokenDistribution = field(default_factory=TokenDistribution)

    def __post_init__(self) -> None:
        if self.mean_rate < 0 or not 0 <= self.daily_amplitude <= 1 or self.duration_s <= 0 or self.day_length_s <= 0:
            raise ValueError("need mean_rate >= 0, daily_amplitude in [0, 1], positive durations")
        if self.burst_height[0] < 1 or self.burst_height[1] < self.burst_height[0] or self.burst_length_s <= 0:
            raise ValueError("burst_height must be a range >= 1 and burst_length_s positive")


def generate_synthetic(spec: SyntheticSpec, rng: np.random.Generator, name: str = "llm-day") -> Workload:
    compression = DAY_S / spec.day_length_s
    n_bursts = rng.poisson(spec.bursts_per_hour * spec.duration_s / 3600.0)
    starts = rng.uniform(0.0, spec.duration_s, n_bursts)
    ends = starts + rng.exponential(spec.burst_length_s, n_bursts)
    heights = rng.uniform(*spec.burst_height, n_bursts)

    def rate(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        hour = (spec.start_hour + t * compression / 3600.0) % 24.0
        level = spec.mean_rate * (1.0 + spec.daily_amplitude * np.cos(2.0 * np.pi * (hour - spec.peak_hour) / 24.0))
        factor = np.ones_like(t)
        for s, e, h in zip(starts, ends, heights):
            factor = np.where((t >= s) & (t < e), np.maximum(factor, h), factor)
        return level * factor

    max_rate = spec.mean_rate * (1.0 + spec.daily_amplitude) * (spec.burst_height[1] if n_bursts else 1.0)
    arrivals = poisson_arrivals(rate, max_rate, spec.duration_s, rng)
    prompt, output = spec.tokens.sample(rng, len(arrivals))
    return Workload(arrivals, prompt, output, spec.duration_s, name, start_time_of_day_s=spec.start_hour * 3600.0)
