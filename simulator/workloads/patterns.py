"""The four traffic patterns (ramp, periodic, random, spike) as seeded
inhomogeneous Poisson processes with an inspectable rate function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator.workloads.tokens import TokenDistribution
from simulator.workloads.workload import Workload

RateFn = Callable[[np.ndarray], np.ndarray]
PATTERNS = ("ramp", "periodic", "random", "spike")


@dataclass(frozen=True)
class PatternSpec:
    """A traffic pattern (rates in requests per second, times in seconds).

    - ``ramp``: base to peak linearly over the first ``ramp_fraction`` of the duration, then peak;
    - ``periodic``: a raised cosine between base and peak with period ``period_s``;
    - ``random``: a level drawn uniformly in [base, peak] every ``change_every_s``;
    - ``spike``: base, and ``peak`` during ``[spike_start_s, spike_start_s + spike_length_s)``.
    """

    kind: str
    duration_s: float = 3600.0
    base_rate: float = 8.0
    peak_rate: float = 40.0
    period_s: float = 1200.0
    change_every_s: float = 300.0
    spike_start_s: float = 1200.0
    spike_length_s: float = 300.0
    ramp_fraction: float = 0.8
    tokens: TokenDistribution = field(default_factory=TokenDistribution)

    def __post_init__(self) -> None:
        if self.kind not in PATTERNS:
            raise ValueError(f"unknown pattern {self.kind!r}; choose one of {', '.join(PATTERNS)}")
        if self.duration_s <= 0 or self.base_rate < 0 or self.peak_rate < self.base_rate:
            raise ValueError("need duration_s > 0 and 0 <= base_rate <= peak_rate")
        if min(self.period_s, self.change_every_s, self.spike_length_s) <= 0 or not 0 < self.ramp_fraction <= 1:
            raise ValueError("period_s, change_every_s and spike_length_s must be positive, ramp_fraction in (0, 1]")


def rate_function(spec: PatternSpec, rng: np.random.Generator) -> RateFn:
    """The pattern's request rate over time (``random`` draws its levels from ``rng``)."""
    base, peak = spec.base_rate, spec.peak_rate
    if spec.kind == "ramp":
        end = spec.ramp_fraction * spec.duration_s
        return lambda t: base + (peak - base) * np.clip(np.asarray(t) / end, 0.0, 1.0)
    if spec.kind == "periodic":
        return lambda t: base + (peak - base) * 0.5 * (1.0 - np.cos(2.0 * np.pi * np.asarray(t) / spec.period_s))
    if spec.kind == "spike":
        start, end = spec.spike_start_s, spec.spike_start_s + spec.spike_length_s
        return lambda t: np.where((np.asarray(t) >= start) & (np.asarray(t) < end), peak, base)
    levels = rng.uniform(base, peak, int(np.ceil(spec.duration_s / spec.change_every_s)) + 1)
    return lambda t: levels[np.minimum((np.asarray(t) // spec.change_every_s).astype(int), len(levels) - 1)]


def poisson_arrivals(rate: RateFn, max_rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrivals of an inhomogeneous Poisson process by thinning (Lewis and Shedler)."""
    if max_rate <= 0:
        return np.zeros(0)
    n = rng.poisson(max_rate * duration_s)
    candidates = np.sort(rng.uniform(0.0, duration_s, n))
    keep = rng.uniform(0.0, max_rate, n) < rate(candidates)
    return candidates[keep]


def generate_pattern(spec: PatternSpec, rng: np.random.Generator, name: str | None = None) -> Workload:
    rate = rate_function(spec, rng)
    arrivals = poisson_arrivals(rate, spec.peak_rate, spec.duration_s, rng)
    prompt, output = spec.tokens.sample(rng, len(arrivals))
    return Workload(arrivals, prompt, output, spec.duration_s, name or spec.kind)
