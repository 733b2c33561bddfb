"""Sweep each policy's main knob to draw cost-against-attainment fronts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.evaluation.runner import ORACLE, EvaluationSetup, FailedRun, PolicyEntry, WorkloadEntry, run_cells


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


def sweep_size(policies: Sequence[PolicyEntry], n_workloads: int, n_seeds: int, *, oracle_targets: Sequence[float] = (0.9, 0.95, 0.99),
               knobs: Mapping[str, Knob] = KNOBS) -> int:
    """How many runs :func:`sweep` makes with these arguments."""
    values = sum(len(knobs[str(p.spec.get("type"))].values) for p in policies if str(p.spec.get("type")) in knobs)
    return (values + len(oracle_targets)) * n_workloads * n_seeds


def sweep(
    policies: Sequence[PolicyEntry],
    workloads: Sequence[WorkloadEntry],
    seeds: Sequence[int],
    setup: EvaluationSetup,
    *,
    oracle_targets: Sequence[float] = (0.9, 0.95, 0.99),
    knobs: Mapping[str, Knob] = KNOBS,
    on_point: Callable[[str, float], None] | None = None,
    on_run: Callable[[str, str, int], None] | None = None,
    executor=None,
    failures: list[FailedRun] | None = None,
) -> list[SweepPoint]:
    """Every policy with a known knob at each of its values; the oracle at each target attainment.

    All runs of all points are cells of one batch for ``executor`` (see
    :func:`simulator.evaluation.runner.evaluate`); ``on_point(policy, value)``
    is called when a point's last run finishes, ``on_run`` after each run. A
    point with a failed run is left out (the failure goes to ``failures``, or
    :class:`~simulator.evaluation.runner.EvaluationFailed` is raised at the end).
    """
    from simulator.evaluation.cells import Cell, make_plan

    variants: list[PolicyEntry] = []
    points: list[tuple[str, str, float]] = []  # (policy, knob, value) per point
    cells: list[Cell] = []  # per_point consecutive cells per point
    for entry in policies:
        knob = knobs.get(str(entry.spec.get("type")))
        if knob is None:
            continue
        for value in knob.values:
            variants.append(PolicyEntry(entry.name, knob.apply(entry.spec, value), entry.behavior))
            points.append((entry.name, knob.name, value))
            for w in range(len(workloads)):
                cells.extend(Cell(len(variants) - 1, w, seed) for seed in seeds)
    for target in oracle_targets:
        points.append((ORACLE, "target_attainment", target))
        for w in range(len(workloads)):
            cells.extend(Cell(None, w, seed, oracle_target=target) for seed in seeds)
    per_point = len(workloads) * len(seeds)
    remaining = [per_point] * len(points)

    def finished(index: int) -> None:
        point = index // per_point
        remaining[point] -= 1
        if remaining[point] == 0 and on_point:
            on_point(points[point][0], points[point][2])

    plan = make_plan(variants, workloads, setup, keep_results=False)
    records = run_cells(plan, cells, executor, on_run=on_run, failures=failures, on_cell=finished)
    out = []
    for p, (policy, knob, value) in enumerate(points):
        summaries = [r.summary for r in records[p * per_point : (p + 1) * per_point] if r is not None]
        if len(summaries) == per_point:
            out.append(_point(policy, knob, value, summaries))
    return out


def _point(policy: str, knob: str, value: float, summaries: Sequence[Mapping[str, float]]) -> SweepPoint:
    return SweepPoint(
        policy, knob, float(value),
        float(np.mean([s["slo_attainment"] for s in summaries])),
        float(np.mean([s["cost_usd"] for s in summaries])),
        float(np.mean([s["gpu_hours"] for s in summaries])),
    )
