"""The observation schema: a versioned, named, fixed-order feature vector.

Both paths build observations only through :func:`build_observation`: the
simulator (training and evaluation) from its simulated snapshot, the
controller from Prometheus, each through the learned policy
(:class:`controller.policies.learned.LearnedPolicy`). A policy artifact
records :data:`SCHEMA_VERSION`; loaders refuse a mismatch.

Schema ``kis-obs/2`` describes load *relative to what the fleet can serve*,
so that a new GPU, model or traffic level does not push it out of range:
demand over the replicas' capacity at the SLO (now and one cold start
ahead, from the planner's forecast), queue and KV pressure, latency over the
SLO, the fleet's state, the planner's own proposal and the cold-start time.
No feature is an absolute rate, token count or replica share of a maximum,
and the time of day is gone (time-compressed and other regions' traces gave
it no meaning). ``kis obs schema`` prints the live table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from controller import load
from controller import signals as sig
from controller.slo import SLO

SCHEMA_VERSION = "kis-obs/2"

#: Every normalised feature is clipped to this range.
CLIP = 10.0
#: Cold starts are measured in units of this many seconds.
COLD_START_UNIT_S = 300.0


@dataclass(frozen=True)
class ObservationInputs:
    """What the features read: the snapshot, the target's context and the planner's view.

    :param snapshot: the metrics snapshot (:mod:`controller.signals`).
    :param slo: the target's SLO.
    :param cold_start_s: seconds a new replica takes to become Ready.
    :param current_replicas: the scale target's replicas now.
    :param needed_now: replicas the current demand needs at full capacity (the planner's, fractional).
    :param needed_ahead: replicas the forecast demand needs one horizon ahead (fractional).
    :param replica_rps: one replica's capacity at the SLO for the current token mix, req/s.
    :param planner_replicas: the planner's proposal (``None``: it has none).
    """

    snapshot: Mapping[str, float]
    slo: SLO
    cold_start_s: float
    current_replicas: int
    needed_now: float
    needed_ahead: float
    replica_rps: float
    planner_replicas: int | None


Raw = Callable[[ObservationInputs], float]


@dataclass(frozen=True)
class Feature:
    """One observation entry.

    ``raw`` computes the physical value (``unit``) from the inputs; the
    observation holds ``clip((raw - offset) / scale)``, and 0 where the raw
    value is missing. ``reads`` names the snapshot signals it reads online
    (their queries live in :mod:`controller.signals`), ``planner`` when it
    reads the planner's view.
    """

    name: str
    unit: str
    offset: float
    scale: float
    raw: Raw
    reads: tuple[str, ...]
    help: str

    def normalise(self, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        return float(min(CLIP, max(-CLIP, (value - self.offset) / self.scale)))


def _get(snapshot: Mapping[str, float], key: str) -> float:
    value = snapshot.get(key, math.nan)
    return float(value) if sig.is_usable(value) else math.nan


def _serving(snapshot: Mapping[str, float]) -> float:
    """The pods that serve (with a sample, :func:`controller.load.reporting_pods`), as a divisor: at least 1."""
    return float(max(load.reporting_pods(snapshot), 1))


def _over_slo(key: str, attr: str) -> Raw:
    return lambda i: _get(i.snapshot, key) / getattr(i.slo, attr)


def _queue_pressure(i: ObservationInputs) -> float:
    """Queued requests per serving pod over what one serves within one TTFT bound."""
    return load.per_replica(i.snapshot, ("requests_waiting",)) / max(i.replica_rps * i.slo.ttft_s, 1e-9)


def _log_ratio(a: float, b: float, floor: float = 0.05) -> float:
    return math.log((max(a, 0.0) + floor) / (max(b, 0.0) + floor))


def _rate_trend(i: ObservationInputs) -> float:
    short, long = _get(i.snapshot, "request_rate"), _get(i.snapshot, "request_rate_long")
    return _log_ratio(short, long) if math.isfinite(short) and math.isfinite(long) else math.nan


def _prompt_share(i: ObservationInputs) -> float:
    prompt, generated = _get(i.snapshot, "prompt_token_rate"), _get(i.snapshot, "generation_token_rate")
    total = prompt + generated
    return prompt / total if math.isfinite(total) and total > 0 else math.nan


def _planner_step(i: ObservationInputs) -> float:
    if i.planner_replicas is None:
        return math.nan
    return (i.planner_replicas - i.current_replicas) / max(i.current_replicas, 1)


def _missing_share(i: ObservationInputs) -> float:
    return sum(0.0 if sig.is_usable(i.snapshot.get(n)) else 1.0 for n in sig.SIGNAL_NAMES) / len(sig.SIGNAL_NAMES)


_READY, _DESIRED, _STARTING = sig.REPLICAS_READY, sig.REPLICAS_DESIRED, sig.REPLICAS_STARTING
_PLANNER = ("planner",)

FEATURES: tuple[Feature, ...] = (
    Feature("load_per_ready", "ratio", 0.0, 1.0, lambda i: i.needed_now / _serving(i.snapshot),
            ("request_rate", "requests_waiting", _READY) + _PLANNER, "demand over the ready replicas' capacity at the SLO"),
    Feature("load_per_desired", "ratio", 0.0, 1.0, lambda i: i.needed_now / max(i.current_replicas, 1),
            ("request_rate", "requests_waiting") + _PLANNER, "demand over the desired replicas' capacity at the SLO"),
    Feature("forecast_per_desired", "ratio", 0.0, 1.0, lambda i: i.needed_ahead / max(i.current_replicas, 1),
            ("request_rate",) + _PLANNER, "forecast demand one cold start ahead over the desired replicas' capacity"),
    Feature("forecast_trend", "log ratio", 0.0, 1.0, lambda i: _log_ratio(i.needed_ahead, i.needed_now), _PLANNER,
            "log of forecast over current demand"),
    Feature("rate_trend", "log ratio", 0.0, 1.0, _rate_trend, ("request_rate", "request_rate_long"),
            "log of the short-window over the long-window request rate"),
    Feature("queue_pressure", "ratio", 0.0, 1.0, _queue_pressure, ("requests_waiting", _READY) + _PLANNER,
            "queued requests over what the ready replicas serve within one TTFT bound"),
    Feature("kv_cache_usage", "fraction", 0.0, 1.0, lambda i: _get(i.snapshot, "kv_cache_usage"), ("kv_cache_usage",), "mean KV-cache usage"),
    Feature("gpu_utilization", "percent", 0.0, 100.0, lambda i: _get(i.snapshot, "gpu_utilization"), ("gpu_utilization",),
            "mean GPU utilisation"),
    Feature("ttft_p95_over_slo", "ratio", 0.0, 1.0, _over_slo("ttft_p95", "ttft_s"), ("ttft_p95",), "p95 TTFT over the TTFT SLO"),
    Feature("tpot_p95_over_slo", "ratio", 0.0, 1.0, _over_slo("tpot_p95", "tpot_s"), ("tpot_p95",), "p95 inter-token latency over the TPOT SLO"),
    Feature("queue_time_p95_over_slo", "ratio", 0.0, 1.0, _over_slo("queue_time_p95", "ttft_s"), ("queue_time_p95",),
            "p95 queue time over the TTFT SLO"),
    Feature("ready_share", "ratio", 0.0, 1.0, lambda i: _get(i.snapshot, _READY) / max(i.current_replicas, 1), (_READY,),
            "ready over desired replicas"),
    Feature("starting_share", "ratio", 0.0, 1.0, lambda i: _get(i.snapshot, _STARTING) / max(i.current_replicas, 1), (_STARTING,),
            "starting (not yet ready) over desired replicas"),
    Feature("replicas_log2", "log2", 0.0, 4.0, lambda i: math.log2(1 + max(i.current_replicas, 0)), (_DESIRED,),
            "log2(1 + desired replicas): how coarse one replica step is"),
    Feature("planner_step", "ratio", 0.0, 1.0, _planner_step, _PLANNER, "(planner's proposal - desired) / desired"),
    Feature("cold_start", "s", 0.0, COLD_START_UNIT_S, lambda i: i.cold_start_s, (), "seconds a new replica takes to become Ready"),
    Feature("prompt_share", "fraction", 0.0, 1.0, _prompt_share, ("prompt_token_rate", "generation_token_rate"),
            "prompt tokens over all tokens processed"),
    Feature("metrics_missing_share", "ratio", 0.0, 1.0, _missing_share, sig.SIGNAL_NAMES, "share of Prometheus signals missing or non-finite"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
OBSERVATION_SIZE = len(FEATURES)


def raw_features(inputs: ObservationInputs) -> dict[str, float]:
    """Physical feature values (NaN where the inputs lack the data)."""
    return {f.name: f.raw(inputs) for f in FEATURES}


def build_observation(inputs: ObservationInputs) -> np.ndarray:
    """The normalised, finite ``float32`` observation vector of ``inputs``."""
    return np.fromiter((f.normalise(f.raw(inputs)) for f in FEATURES), dtype=np.float32, count=OBSERVATION_SIZE)


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
