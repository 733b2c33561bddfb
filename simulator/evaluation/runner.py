"""Policies x workloads x seeds on the same cluster and SLO.

Every policy runs through the controller's own decision step
(:func:`controller.autoscaling.decide`) with the same guardrails, so what is
measured here is what the controller would do online.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.slo import SLO
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig
from simulator.results import SimulationResult
from simulator.runner import DecideFn, decider, sim_autoscaler
from simulator.workloads.workload import Workload

ORACLE = "oracle"


@dataclass(frozen=True)
class PolicyEntry:
    """A named policy configuration: a registry spec plus guardrail overrides."""

    name: str
    spec: Mapping[str, Any]
    behavior: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadEntry:
    """A named workload; ``make(seed)`` draws it (traces ignore the seed)."""

    name: str
    make: Callable[[int], Workload]


@dataclass(frozen=True)
class EvaluationSetup:
    """What every policy shares."""

    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    slo: SLO = SLO()
    interval_s: float = 15.0
    min_replicas: int = 1
    max_replicas: int = 16
    initial_replicas: int = 2
    oracle_target: float = 0.99


@dataclass
class RunRecord:
    policy: str
    workload: str
    seed: int
    summary: dict[str, float]
    result: SimulationResult | None = None


def make_decider(entry: PolicyEntry, setup: EvaluationSetup, pools: tuple[PoolRuntime, ...] | None = None) -> DecideFn:
    """A stateful closure over the controller's decision step for one run."""
    from controller.guardrails import Behavior
    from controller.policies.registry import build_policy

    behavior = Behavior(min_replicas=setup.min_replicas, max_replicas=setup.max_replicas, **dict(entry.behavior))
    autoscaler = sim_autoscaler(build_policy(dict(entry.spec)), setup.cluster, behavior, slo=setup.slo, interval_s=setup.interval_s,
                                pools=pools)
    return decider(autoscaler)


def burst_start_s(workload: Workload, factor: float = 1.5) -> float:
    """Start of the sharpest rise of the per-minute request rate above ``factor`` x its median (NaN if none)."""
    minutes = max(1, math.ceil(workload.duration_s / 60.0))
    counts = np.bincount(np.minimum((workload.arrival_s // 60).astype(int), minutes - 1), minlength=minutes).astype(float)
    if minutes < 3:
        return math.nan
    rise = np.diff(counts, prepend=counts[0])
    candidates = np.where(counts > factor * max(np.median(counts), 1.0))[0]
    if not len(candidates):
        return math.nan
    return float(candidates[np.argmax(rise[candidates])] * 60.0)


def reaction_time_s(workload: Workload, result: SimulationResult) -> float:
    """Seconds from the burst's start until more replicas are Ready than at its start (NaN: no burst or no reaction)."""
    start = burst_start_s(workload)
    t = np.array(result.timeline.t)
    ready = np.array(result.timeline.ready)
    if math.isnan(start) or not len(t):
        return math.nan
    before = ready[t <= start]
    level = before[-1] if len(before) else ready[0]
    after = np.where((t > start) & (ready > level))[0]
    return float(t[after[0]] - start) if len(after) else math.nan


@dataclass(frozen=True)
class FailedRun:
    """A run that raised: which policy, workload and seed, and why."""

    policy: str
    workload: str
    seed: int
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.policy} on {self.workload} (seed {self.seed}): {self.error}"


class EvaluationFailed(RuntimeError):
    """Some runs raised; the others completed and are in :attr:`records`."""

    def __init__(self, failures: Sequence[FailedRun], records: Sequence[RunRecord]) -> None:
        self.failures = list(failures)
        self.records = list(records)
        lines = "; ".join(str(f) for f in self.failures[:5]) + ("; ..." if len(self.failures) > 5 else "")
        super().__init__(f"{len(self.failures)} of {len(self.failures) + len(self.records)} runs failed: {lines}")


def evaluation_cells(n_policies: int, n_workloads: int, seeds: Sequence[int], include_oracle: bool) -> list:
    """The cells of an evaluation in report order: per workload and seed, every policy, then the oracle."""
    from simulator.evaluation.cells import Cell

    cells = []
    for w in range(n_workloads):
        for seed in seeds:
            cells.extend(Cell(p, w, seed) for p in range(n_policies))
            if include_oracle:
                cells.append(Cell(None, w, seed))
    return cells


def run_cells(plan, cells: Sequence, executor=None, on_run: Callable[[str, str, int], None] | None = None,
              failures: list[FailedRun] | None = None, on_cell: Callable[[int], None] | None = None) -> list[RunRecord | None]:
    """Run ``cells`` of ``plan`` on ``executor`` (default: serial); a record per cell, ``None`` where it failed.

    ``on_run(policy, workload, seed)`` and ``on_cell(index)`` are called as each cell finishes. Failed runs are
    appended to ``failures`` when given; otherwise :class:`EvaluationFailed` is raised after every cell ran.
    """
    from simulator.evaluation.cells import label, run_cell, weights
    from simulator.executor import SerialExecutor

    executor = executor or SerialExecutor()

    def done(outcome) -> None:
        if on_run:
            cell = cells[outcome.index]
            policy = ORACLE if cell.policy is None else plan.policies[cell.policy].name
            on_run(policy, plan.workloads[cell.workload].name, cell.seed)
        if on_cell:
            on_cell(outcome.index)

    outcomes = executor.map(run_cell, plan, cells, labels=[label(plan, c) for c in cells], weights=weights(cells), on_done=done)
    failed = []
    for outcome, cell in zip(outcomes, cells):
        if not outcome.ok:
            policy = ORACLE if cell.policy is None else plan.policies[cell.policy].name
            failed.append(FailedRun(policy, plan.workloads[cell.workload].name, cell.seed, outcome.failure.error, outcome.failure.traceback))
    records = [o.value if o.ok else None for o in outcomes]
    if failed:
        if failures is None:
            raise EvaluationFailed(failed, [r for r in records if r is not None])
        failures.extend(failed)
    return records


def evaluate(
    policies: Sequence[PolicyEntry],
    workloads: Sequence[WorkloadEntry],
    seeds: Sequence[int],
    setup: EvaluationSetup = EvaluationSetup(),
    *,
    include_oracle: bool = True,
    keep_results: bool = True,
    on_run: Callable[[str, str, int], None] | None = None,
    executor=None,
    failures: list[FailedRun] | None = None,
) -> list[RunRecord]:
    """Run every policy (and the oracle) on every workload and seed.

    Each run is an independent cell (:mod:`simulator.evaluation.cells`) given to
    ``executor`` (:mod:`simulator.executor`; default: serial in this process);
    the records come in the same order, with the same values, whichever runs
    them. ``on_run(policy, workload, seed)`` is called as each run finishes. A
    run that raises does not stop the others: it is appended to ``failures``
    when that list is given, else :class:`EvaluationFailed` is raised at the end.
    """
    from simulator.evaluation.cells import make_plan

    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    if not seeds:
        raise ValueError("need at least one seed")
    plan = make_plan(policies, workloads, setup, keep_results)
    cells = evaluation_cells(len(policies), len(workloads), seeds, include_oracle)
    return [r for r in run_cells(plan, cells, executor, on_run, failures) if r is not None]


def record(policy: str, workload_name: str, seed: int, workload: Workload, result: SimulationResult, keep: bool) -> RunRecord:
    """The record of one finished run: its summary, the burst reaction time and (if ``keep``) the whole result."""
    summary = result.summary()
    summary["reaction_time_s"] = reaction_time_s(workload, result)
    return RunRecord(policy, workload_name, seed, summary, result if keep else None)


def aggregate(records: Sequence[RunRecord]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean of each summary metric over seeds, per (policy, workload); NaN-aware."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for record in records:
        groups.setdefault((record.policy, record.workload), []).append(record.summary)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, summaries in groups.items():
        merged: dict[str, float] = {}
        for metric in summaries[0]:
            values = np.array([s.get(metric, math.nan) for s in summaries], dtype=float)
            finite = values[np.isfinite(values)]
            merged[metric] = float(finite.mean()) if len(finite) else math.nan
        merged["seeds"] = float(len(summaries))
        out[key] = merged
    return out
