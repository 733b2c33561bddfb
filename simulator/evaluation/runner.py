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
from simulator.cluster.build import resolve_pools
from simulator.cluster.config import ClusterConfig
from simulator.evaluation.oracle import oracle
from simulator.results import SimulationResult
from simulator.runner import DecideFn, simulate
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


def make_decider(entry: PolicyEntry, setup: EvaluationSetup) -> DecideFn:
    """A stateful closure over the controller's decision step for one run."""
    from controller.autoscaling import Autoscaler, decide
    from controller.guardrails import Behavior
    from controller.policies.registry import build_policy

    behavior = Behavior(min_replicas=setup.min_replicas, max_replicas=setup.max_replicas, **dict(entry.behavior))
    autoscaler = Autoscaler(policy=build_policy(dict(entry.spec)), behavior=behavior, slo=setup.slo, interval_s=setup.interval_s)
    state = [autoscaler.initial_state()]

    def step(snapshot, now_s, current):
        record, state[0] = decide(autoscaler, snapshot, now_s, current, state[0])
        return record

    return step


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


def evaluate(
    policies: Sequence[PolicyEntry],
    workloads: Sequence[WorkloadEntry],
    seeds: Sequence[int],
    setup: EvaluationSetup = EvaluationSetup(),
    *,
    include_oracle: bool = True,
    keep_results: bool = True,
    on_run: Callable[[str, str, int], None] | None = None,
) -> list[RunRecord]:
    """Run every policy (and the oracle) on every workload and seed."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    if not seeds:
        raise ValueError("need at least one seed")
    pools = resolve_pools(setup.cluster)
    records: list[RunRecord] = []
    for wl_entry in workloads:
        for seed in seeds:
            workload = wl_entry.make(seed)
            for entry in policies:
                result = simulate(
                    workload, setup.cluster, replicas=setup.initial_replicas, decide=make_decider(entry, setup),
                    interval_s=setup.interval_s, slo=setup.slo, seed=seed, name=entry.name, pools=pools,
                )
                records.append(_record(entry.name, wl_entry.name, seed, workload, result, keep_results))
                if on_run:
                    on_run(entry.name, wl_entry.name, seed)
            if include_oracle:
                found = oracle(
                    workload, setup.cluster, pools, slo=setup.slo, target_attainment=setup.oracle_target,
                    interval_s=setup.interval_s, min_replicas=setup.min_replicas, max_replicas=setup.max_replicas, seed=seed,
                )
                records.append(_record(ORACLE, wl_entry.name, seed, workload, found.result, keep_results))
                if on_run:
                    on_run(ORACLE, wl_entry.name, seed)
    return records


def _record(policy: str, workload_name: str, seed: int, workload: Workload, result: SimulationResult, keep: bool) -> RunRecord:
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
