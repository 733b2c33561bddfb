"""Sweep each policy's main knob to draw cost-against-attainment fronts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.evaluation.runner import ORACLE, EvaluationSetup, PolicyEntry, WorkloadEntry, evaluate


@dataclass(frozen=True)
class SweepPoint:
    """One knob setting, averaged over workloads and seeds."""

    policy: str
    knob: str
    knob_value: float
    slo_attainment: float
    cost_usd: float
    gpu_hours: float


@dataclass(frozen=True)
class Knob:
    """The knob of a policy type: its name, the values to try, and how a value enters the spec."""

    name: str
    values: tuple[float, ...]
    apply: Callable[[Mapping[str, Any], float], dict[str, Any]]


def _set(key: str) -> Callable[[Mapping[str, Any], float], dict[str, Any]]:
    return lambda spec, value: {**spec, key: value}


def _threshold(spec: Mapping[str, Any], value: float) -> dict[str, Any]:
    ratio = spec.get("scale_down_tpm", 0.5 * spec.get("scale_up_tpm", value)) / max(spec.get("scale_up_tpm", value), 1e-9)
    return {**spec, "scale_up_tpm": value, "scale_down_tpm": value * ratio}


#: Main knob per policy type (the learned policy's knob is its reward weight: one artifact per point).
KNOBS: dict[str, Knob] = {
    "hpa": Knob("target", (2, 4, 6, 8, 12, 16, 24), _set("target")),
    "threshold": Knob("scale_up_tpm", (60_000, 120_000, 180_000, 240_000, 360_000, 480_000), _threshold),
    "kpa": Knob("target", (2, 4, 8, 12, 16, 24, 32), _set("target")),
    "fixed": Knob("replicas", (1, 2, 3, 4, 6, 8, 12), lambda spec, value: {**spec, "replicas": int(value)}),
}


def sweep(
    policies: Sequence[PolicyEntry],
    workloads: Sequence[WorkloadEntry],
    seeds: Sequence[int],
    setup: EvaluationSetup,
    *,
    oracle_targets: Sequence[float] = (0.9, 0.95, 0.99),
    knobs: Mapping[str, Knob] = KNOBS,
    on_point: Callable[[str, float], None] | None = None,
) -> list[SweepPoint]:
    """Every policy with a known knob at each of its values; the oracle at each target attainment."""
    points: list[SweepPoint] = []
    for entry in policies:
        knob = knobs.get(str(entry.spec.get("type")))
        if knob is None:
            continue
        for value in knob.values:
            variant = PolicyEntry(entry.name, knob.apply(entry.spec, value), entry.behavior)
            records = evaluate([variant], workloads, seeds, setup, include_oracle=False, keep_results=False)
            points.append(_point(entry.name, knob.name, value, [r.summary for r in records]))
            if on_point:
                on_point(entry.name, value)
    for target in oracle_targets:
        records = evaluate([], workloads, seeds, EvaluationSetup(**{**setup.__dict__, "oracle_target": target}), keep_results=False)
        points.append(_point(ORACLE, "target_attainment", target, [r.summary for r in records]))
        if on_point:
            on_point(ORACLE, target)
    return points


def _point(policy: str, knob: str, value: float, summaries: Sequence[Mapping[str, float]]) -> SweepPoint:
    return SweepPoint(
        policy, knob, float(value),
        float(np.mean([s["slo_attainment"] for s in summaries])),
        float(np.mean([s["cost_usd"] for s in summaries])),
        float(np.mean([s["gpu_hours"] for s in summaries])),
    )
