"""A clairvoyant oracle: the cheapest replica schedule, knowing every future
arrival, that meets the SLO target while respecting cold start.

How it works:

1. **Demand.** Each request's GPU work is estimated from the latency model:
   its prefill time plus its share of decode iterations at a reference batch.
   Summed per control interval, that is the work ``W_k`` (GPU-seconds) that
   arrives in interval ``k``.
2. **Schedule for a capacity.** For a per-replica capacity ``c`` (work
   seconds per second), interval ``k`` needs ``n_k = ceil(max(W_k, W_k+1) /
   (interval * c))`` replicas (the neighbour absorbs queue spill-over). Knowing
   the future, a replica is asked for one cold start ahead: the desired count
   at ``t`` is the most needed in ``[t, t + cold start]``; it drops as soon as
   the need does.
3. **Search.** Attainment falls as ``c`` grows (fewer replicas). Bisection on
   ``c`` finds the largest capacity whose schedule, replayed through the same
   simulated cluster as every policy, still meets the target attainment.

The result is the least-cost member of a family of clairvoyant schedules, a
practical lower bound on what an online policy can reach on that workload;
it is not a proof of optimality (a schedule outside the family could be
cheaper). It never sees the SLO misses it causes; it only sees the future.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.decision import DecisionRecord
from controller.slo import SLO
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig
from simulator.profiles.latency import IterationTimeModel
from simulator.results import SimulationResult
from simulator.runner import simulate
from simulator.workloads.workload import Workload

#: Reference decode batch for a request's share of an iteration.
REFERENCE_BATCH = 32


def request_work_s(model: IterationTimeModel, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Estimated GPU-seconds each request costs on one replica."""
    work = np.empty(len(prompt_tokens))
    for i, (p, o) in enumerate(zip(prompt_tokens.tolist(), output_tokens.tolist())):
        decode = model.decode_ms(REFERENCE_BATCH, int(p + o / 2)) / REFERENCE_BATCH
        work[i] = (model.prefill_ms(1, int(p)) + max(0, o - 1) * decode) / 1000.0
    return work


def demand_per_interval(workload: Workload, work_s: np.ndarray, interval_s: float) -> np.ndarray:
    """GPU work arriving in each control interval."""
    n = max(1, math.ceil(workload.duration_s / interval_s))
    index = np.minimum((workload.arrival_s // interval_s).astype(int), n - 1)
    return np.bincount(index, weights=work_s, minlength=n)


def schedule_for_capacity(
    demand: np.ndarray,
    capacity: float,
    interval_s: float,
    cold_start_s: float,
    min_replicas: int,
    max_replicas: int,
) -> np.ndarray:
    """Desired replicas per interval for a per-replica capacity (work-seconds per second)."""
    spill = np.maximum(demand, np.append(demand[1:], 0.0))
    need = np.ceil(spill / (interval_s * capacity)).astype(int)
    ahead = math.ceil(cold_start_s / interval_s)
    desired = np.array([need[k : k + ahead + 1].max() for k in range(len(need))])
    return np.clip(desired, min_replicas, max_replicas)


@dataclass(frozen=True)
class OracleResult:
    """The chosen schedule, its replay, and the search that led to it."""

    capacity: float
    schedule: np.ndarray
    result: SimulationResult
    tried: tuple[tuple[float, float, float], ...]  # (capacity, attainment, cost)
    met_target: bool


class _Replay:
    """A decide function that follows a precomputed schedule (oracle knowledge)."""

    def __init__(self, schedule: np.ndarray, interval_s: float) -> None:
        self.schedule = schedule
        self.interval_s = interval_s

    def __call__(self, snapshot, now_s: float, current: int) -> DecisionRecord:
        k = min(int(round(now_s / self.interval_s)), len(self.schedule) - 1)
        target = int(self.schedule[k])
        return DecisionRecord(time_s=now_s, policy="oracle", current_replicas=current, proposal=target, final=target, reason="OracleSchedule")


def oracle(
    workload: Workload,
    config: ClusterConfig,
    pools: tuple[PoolRuntime, ...],
    *,
    slo: SLO = SLO(),
    target_attainment: float = 0.99,
    interval_s: float = 15.0,
    min_replicas: int = 1,
    max_replicas: int = 16,
    seed: int = 0,
    iterations: int = 9,
    capacity_bounds: Sequence[float] = (0.05, 1.5),
) -> OracleResult:
    """The cheapest schedule of the family (module docstring) meeting ``target_attainment``."""
    if not 0 < target_attainment <= 1:
        raise ValueError(f"target_attainment must be in (0, 1], got {target_attainment}")
    lifecycle = config.lifecycle
    cold_start = (lifecycle.image_pull_s + lifecycle.model_load_s) * (1 + lifecycle.jitter)
    demand = demand_per_interval(workload, request_work_s(pools[0].model, workload.prompt_tokens, workload.output_tokens), interval_s)
    first_window = demand[: max(1, math.ceil(cold_start / interval_s))]
    tried: list[tuple[float, float, float]] = []

    def run(capacity: float) -> tuple[np.ndarray, SimulationResult]:
        schedule = schedule_for_capacity(demand, capacity, interval_s, cold_start, min_replicas, max_replicas)
        start = int(schedule[0]) if len(first_window) else min_replicas
        result = simulate(workload, config, replicas=start, decide=_Replay(schedule, interval_s), interval_s=interval_s,
                          slo=slo, seed=seed, name="oracle", pools=pools)
        summary = result.summary()
        tried.append((capacity, summary["slo_attainment"], summary["cost_usd"]))
        return schedule, result

    lo, hi = capacity_bounds
    best_schedule, best = run(lo)
    best_capacity = lo
    met = best.summary()["slo_attainment"] >= target_attainment
    if met:
        for _ in range(iterations):
            mid = math.sqrt(lo * hi)
            schedule, result = run(mid)
            if result.summary()["slo_attainment"] >= target_attainment:
                lo = mid
                if result.cost_usd <= best.cost_usd:
                    best_schedule, best, best_capacity = schedule, result, mid
            else:
                hi = mid
    return OracleResult(best_capacity, best_schedule, best, tuple(tried), met)
