"""The observation schema: a versioned, named, fixed-order feature vector.

Both paths build observations only through :func:`build_observation`: the
simulator from its simulated snapshot, the controller from Prometheus. A
policy artifact records :data:`SCHEMA_VERSION`; loaders refuse a mismatch.

===  ============================  ==========  ===============================
idx  feature                       unit        normalisation (value -> obs)
===  ============================  ==========  ===============================
see  :data:`FEATURES` (``kis obs schema`` prints the live table)
===  ============================  ==========  ===============================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from controller import signals as sig
from controller.slo import SLO

SCHEMA_VERSION = "kis-obs/1"

#: Every normalised feature is clipped to this range.
CLIP = 10.0


@dataclass(frozen=True)
class ObservationContext:
    """What the features need beyond the snapshot."""

    slo: SLO
    max_replicas: int

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise ValueError(f"max_replicas must be >= 1, got {self.max_replicas}")


@dataclass(frozen=True)
class Feature:
    """One observation entry.

    ``raw`` computes the physical value (``unit``) from a snapshot; the
    observation holds ``clip((raw - offset) / scale)``. ``promql`` names the
    signals it reads online (their queries live in :mod:`controller.signals`).
    """

    name: str
    unit: str
    offset: float
    scale: float
    raw: Callable[[Mapping[str, float], ObservationContext], float]
    reads: tuple[str, ...]
    help: str

    def normalise(self, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        return float(min(CLIP, max(-CLIP, (value - self.offset) / self.scale)))


def _get(snapshot: Mapping[str, float], key: str) -> float:
    value = snapshot.get(key, math.nan)
    return float(value) if sig.is_usable(value) else math.nan


def _ready(snapshot: Mapping[str, float]) -> float:
    ready = _get(snapshot, sig.REPLICAS_READY)
    return max(ready, 1.0) if math.isfinite(ready) else 1.0


def _per_ready(key: str) -> Callable[[Mapping[str, float], ObservationContext], float]:
    return lambda s, _c: _get(s, key) / _ready(s)


def _trend(s: Mapping[str, float], _c: ObservationContext) -> float:
    short, long = _get(s, "request_rate"), _get(s, "request_rate_long")
    if not (math.isfinite(short) and math.isfinite(long)):
        return math.nan
    return (short + 0.1) / (long + 0.1) - 1.0


def _over_slo(key: str, attr: str) -> Callable[[Mapping[str, float], ObservationContext], float]:
    return lambda s, c: _get(s, key) / getattr(c.slo, attr)


def _replica_share(key: str) -> Callable[[Mapping[str, float], ObservationContext], float]:
    return lambda s, c: _get(s, key) / c.max_replicas


def _day_phase(fn: Callable[[float], float]) -> Callable[[Mapping[str, float], ObservationContext], float]:
    def raw(s: Mapping[str, float], _c: ObservationContext) -> float:
        t = _get(s, sig.TIME_OF_DAY_S)
        return fn(2.0 * math.pi * t / 86400.0) if math.isfinite(t) else math.nan

    return raw


def _missing_share(s: Mapping[str, float], _c: ObservationContext) -> float:
    return sum(0.0 if sig.is_usable(s.get(n)) else 1.0 for n in sig.SIGNAL_NAMES) / len(sig.SIGNAL_NAMES)


FEATURES: tuple[Feature, ...] = (
    Feature("request_rate", "req/s", 0.0, 10.0, lambda s, c: _get(s, "request_rate"), ("request_rate",), "completed requests per second"),
    Feature("request_rate_trend", "ratio", 0.0, 1.0, _trend, ("request_rate", "request_rate_long"), "short over long rate, minus one"),
    Feature("prompt_token_rate_per_replica", "tokens/s", 0.0, 5000.0, _per_ready("prompt_token_rate"), ("prompt_token_rate",), "prompt tokens/s per ready replica"),
    Feature("generation_token_rate_per_replica", "tokens/s", 0.0, 1000.0, _per_ready("generation_token_rate"), ("generation_token_rate",), "generated tokens/s per ready replica"),
    Feature("running_per_replica", "requests", 0.0, 32.0, _per_ready("requests_running"), ("requests_running",), "running requests per ready replica"),
    Feature("waiting_per_replica", "requests", 0.0, 8.0, _per_ready("requests_waiting"), ("requests_waiting",), "queued requests per ready replica"),
    Feature("kv_cache_usage", "fraction", 0.0, 1.0, lambda s, c: _get(s, "kv_cache_usage"), ("kv_cache_usage",), "mean KV-cache usage"),
    Feature("gpu_utilization", "percent", 0.0, 100.0, lambda s, c: _get(s, "gpu_utilization"), ("gpu_utilization",), "mean GPU utilisation"),
    Feature("ttft_p95_over_slo", "ratio", 0.0, 1.0, _over_slo("ttft_p95", "ttft_s"), ("ttft_p95",), "p95 TTFT divided by the TTFT SLO"),
    Feature("tpot_p95_over_slo", "ratio", 0.0, 1.0, _over_slo("tpot_p95", "tpot_s"), ("tpot_p95",), "p95 inter-token latency divided by the TPOT SLO"),
    Feature("queue_time_p95", "s", 0.0, 1.0, lambda s, c: _get(s, "queue_time_p95"), ("queue_time_p95",), "p95 queue time"),
    Feature("replicas_ready_share", "ratio", 0.0, 1.0, _replica_share(sig.REPLICAS_READY), (sig.REPLICAS_READY,), "ready replicas / max replicas"),
    Feature("replicas_starting_share", "ratio", 0.0, 1.0, _replica_share(sig.REPLICAS_STARTING), (sig.REPLICAS_STARTING,), "starting replicas / max replicas"),
    Feature("replicas_desired_share", "ratio", 0.0, 1.0, _replica_share(sig.REPLICAS_DESIRED), (sig.REPLICAS_DESIRED,), "desired replicas / max replicas"),
    Feature("time_of_day_sin", "1", 0.0, 1.0, _day_phase(math.sin), (sig.TIME_OF_DAY_S,), "sine of the time of day"),
    Feature("time_of_day_cos", "1", 0.0, 1.0, _day_phase(math.cos), (sig.TIME_OF_DAY_S,), "cosine of the time of day"),
    Feature("metrics_missing_share", "ratio", 0.0, 1.0, _missing_share, sig.SIGNAL_NAMES, "share of Prometheus signals missing or non-finite"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
OBSERVATION_SIZE = len(FEATURES)


def raw_features(snapshot: Mapping[str, float], ctx: ObservationContext) -> dict[str, float]:
    """Physical feature values (NaN where the snapshot lacks the data)."""
    return {f.name: f.raw(snapshot, ctx) for f in FEATURES}


def build_observation(snapshot: Mapping[str, float], ctx: ObservationContext) -> np.ndarray:
    """The normalised, finite ``float32`` observation vector of ``snapshot``."""
    return np.fromiter(
        (f.normalise(f.raw(snapshot, ctx)) for f in FEATURES), dtype=np.float32, count=OBSERVATION_SIZE
    )


def schema_description() -> dict:
    """A JSON-ready description of the schema, stored in policy artifacts."""
    return {
        "version": SCHEMA_VERSION,
        "clip": CLIP,
        "features": [
            {"index": i, "name": f.name, "unit": f.unit, "offset": f.offset, "scale": f.scale, "reads": list(f.reads), "help": f.help}
            for i, f in enumerate(FEATURES)
        ],
    }
