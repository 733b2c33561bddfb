"""Randomised training traffic: rates, shapes, burstiness and token mixes drawn per episode.

Each episode draws a mean rate (log-uniform over ``rate``), a token mix
(log-uniform mean prompt and output lengths, log-normal around them, prompts up
to ``prompt_max``) and a rate shape built from one or two of: flat, a daily
cycle, a ramp up or down, spikes, random level steps, gaps of silence, and
(opt-in, ``onoff``) bursts of a few minutes that come back after silences of a
few minutes, the shape of real coding-assistant traffic. Every
minute's rate is also multiplied by gamma noise (burstiness), and the
arrivals are a Poisson process with that rate (thinning). The defaults span
0.1x to 10x the Azure LLM traces' mean rates without reading them, so those
traces stay unseen in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.workloads.patterns import poisson_arrivals
from simulator.workloads.workload import Workload

#: Every shape an episode can draw.
SHAPES: tuple[str, ...] = ("flat", "daily", "ramp", "spikes", "steps", "silence", "onoff")
#: The shapes drawn unless a spec names its own (``onoff`` is opt-in, so earlier seeds draw the same episodes).
DEFAULT_SHAPES: tuple[str, ...] = SHAPES[:-1]


@dataclass(frozen=True)
class RandomizedSpec:
    """Ranges an episode is drawn from.

    :param duration_s: episode length.
    :param rate: mean request rate range (req/s, log-uniform).
    :param prompt_mean: mean prompt length range (tokens, log-uniform).
    :param output_mean: mean output length range (tokens, log-uniform).
    :param prompt_sigma: log-normal spread of prompt lengths.
    :param output_sigma: log-normal spread of output lengths.
    :param prompt_max: longest prompt (tokens).
    :param output_max: longest output (tokens).
    :param burstiness: range of the coefficient of variation of the per-minute rate noise.
    :param shapes: rate shapes to draw from (a subset of :data:`SHAPES`).
    :param combine: probability that a second shape multiplies the first.
    """

    duration_s: float = 3600.0
    rate: tuple[float, float] = (0.25, 55.0)
    prompt_mean: tuple[float, float] = (64.0, 8192.0)
    output_mean: tuple[float, float] = (8.0, 512.0)
    prompt_sigma: float = 0.8
    output_sigma: float = 1.0
    prompt_max: int = 32768
    output_max: int = 4096
    burstiness: tuple[float, float] = (0.05, 0.6)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    combine: float = 0.4

    def __post_init__(self) -> None:
        for name in ("rate", "prompt_mean", "output_mean"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: need 0 < low <= high, got ({lo}, {hi})")
        if not 0 <= self.burstiness[0] <= self.burstiness[1]:
            raise ValueError(f"burstiness: need 0 <= low <= high, got {self.burstiness}")
        unknown = set(self.shapes) - set(SHAPES)
        if not self.shapes or unknown:
            raise ValueError(f"shapes must be a non-empty subset of {', '.join(SHAPES)}; unknown: {sorted(unknown)}")
        if self.duration_s < 60 or not 0 <= self.combine <= 1:
            raise ValueError("need duration_s >= 60 and 0 <= combine <= 1")


def _log_uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    lo, hi = span
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _shape(kind: str, t: np.ndarray, duration: float, rng: np.random.Generator) -> np.ndarray:
    """A rate multiplier over the minute grid ``t`` (seconds)."""
    if kind == "flat":
        return np.ones_like(t)
    if kind == "daily":
        period = rng.uniform(0.5, 2.0) * duration
        amplitude = rng.uniform(0.3, 0.9)
        return 1.0 + amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    if kind == "ramp":
        start, end = np.sort(rng.uniform(0, duration, 2))
        a, b = _log_uniform(rng, (0.2, 1.0)), _log_uniform(rng, (1.0, 5.0))
        if rng.random() < 0.5:
            a, b = b, a
        return a + (b - a) * np.clip((t - start) / max(end - start, 60.0), 0, 1)
    if kind == "spikes":
        out = np.ones_like(t)
        for _ in range(int(rng.integers(1, 4))):
            start, width = rng.uniform(0, duration), rng.uniform(60, 900)
            out = np.where((t >= start) & (t < start + width), out * rng.uniform(2.0, 6.0), out)
        return out
    if kind == "steps":
        edges = np.cumsum(rng.uniform(120, 900, int(duration // 120) + 2))
        levels = np.exp(rng.uniform(np.log(0.3), np.log(3.0), len(edges) + 1))
        return levels[np.searchsorted(edges, t)]
    if kind == "onoff":
        return _on_off(t, rng)
    assert kind == "silence"
    out = np.ones_like(t)
    for _ in range(int(rng.integers(1, 3))):
        start, width = rng.uniform(0, duration), rng.uniform(300, 1200)
        out = np.where((t >= start) & (t < start + width), 0.0, out)
    return out


def _on_off(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Alternating runs: on for 1 to 5 minutes at 0.3x to 3x, off for 1 to 8 minutes at under a tenth."""
    out = np.empty_like(t)
    on, i = bool(rng.random() < 0.5), 0
    while i < len(t):
        n = int(rng.integers(1, 6 if on else 9))
        out[i:i + n] = _log_uniform(rng, (0.3, 3.0)) if on else rng.uniform(0.0, 0.1)
        i, on = i + n, not on
    return out


def randomized_workload(spec: RandomizedSpec, rng: np.random.Generator, name: str = "randomized") -> Workload:
    """One episode's workload drawn from ``spec``."""
    duration = spec.duration_s
    minutes = np.arange(0.0, duration, 60.0)
    kinds = [spec.shapes[int(rng.integers(len(spec.shapes)))]]
    if rng.random() < spec.combine:
        kinds.append(spec.shapes[int(rng.integers(len(spec.shapes)))])
    level = np.ones_like(minutes)
    for kind in kinds:
        level = level * _shape(kind, minutes, duration, rng)
    cv = rng.uniform(*spec.burstiness)
    if cv > 0:
        level = level * rng.gamma(1.0 / cv**2, cv**2, len(minutes))
    active = level[level > 0]
    level = level / (active.mean() if len(active) else 1.0) * _log_uniform(rng, spec.rate)

    def rate(t: np.ndarray) -> np.ndarray:
        return level[np.minimum((np.asarray(t) // 60.0).astype(int), len(level) - 1)]

    arrivals = poisson_arrivals(rate, float(level.max()) if len(level) else 0.0, duration, rng)
    n = len(arrivals)
    prompt_mean, output_mean = _log_uniform(rng, spec.prompt_mean), _log_uniform(rng, spec.output_mean)
    prompts = _lognormal(rng, prompt_mean, spec.prompt_sigma, n, spec.prompt_max)
    outputs = _lognormal(rng, output_mean, spec.output_sigma, n, spec.output_max)
    label = f"{name}:{'*'.join(kinds)}"
    return Workload(arrivals, prompts, outputs, duration, label)


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int, cap: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, cap).astype(np.int64)


def randomized_sampler(spec: RandomizedSpec = RandomizedSpec()):
    """A :data:`simulator.envs.autoscale.WorkloadSampler` drawing :func:`randomized_workload` episodes."""

    def sample(rng: np.random.Generator) -> Workload:
        return randomized_workload(spec, rng)

    return sample
