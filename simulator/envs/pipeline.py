"""``kis/Pipeline-v0``: scale every stage of a pipeline at once under a shared GPU budget.

Action: ``MultiDiscrete([3] * stages)``, ``0, 1, 2`` = one replica less, hold,
one more, per stage; the stages' bounds and then the budget (total replicas
asked for) are applied, the budget taking from the least loaded stages first.
Observation, per stage: utilisation (clipped at 2), ``log1p(queue) / 5``,
ready and starting replicas over the stage's maximum, latency share; then
arrivals over the slowest stage's capacity (clipped at 4) and replicas over
the budget. Reward per step: ``-(P99 / SLO excess) - cost_weight x cost
rate / the fleet's cost at the budget``. An episode is one workload
(drawn fresh each reset from the seed; ``pattern`` may list several,
comma-separated, one drawn per episode), ``duration_s`` long, at the
pipeline's rates (:func:`simulator.pipeline.workloads.rates_for`).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from simulator.pipeline.controllers import bound
from simulator.pipeline.sim import PipelineSim
from simulator.pipeline.snapshot import PipelineSnapshot
from simulator.pipeline.spec import PipelineSpec, resolve_pipeline
from simulator.pipeline.workloads import pipeline_workload, rates_for

FEATURES_PER_STAGE = 5


def observe(snap: PipelineSnapshot, gpu_budget: int) -> np.ndarray:
    """The observation of the module docstring, from one snapshot (pure: a trained policy reads it online too)."""
    latencies = [s.latency_s if math.isfinite(s.latency_s) else 0.0 for s in snap.stages]
    total = sum(latencies) or 1.0
    values: list[float] = []
    for s, lat in zip(snap.stages, latencies):
        values += [min(2.0, s.utilisation), min(4.0, math.log1p(s.queue) / 5.0), s.ready / s.max_replicas,
                   s.starting / s.max_replicas, lat / total]
    slowest = min(s.capacity_rps for s in snap.stages)
    values += [min(4.0, snap.arrival_rate / slowest), min(4.0, sum(s.desired for s in snap.stages) / gpu_budget)]
    return np.clip(np.asarray(values, dtype=np.float32), 0.0, 4.0)


class PipelineEnv(gym.Env):
    """See the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, pipeline: str | PipelineSpec = "rag", pattern: str = "ramp", duration_s: float = 600.0,
                 interval_s: float = 15.0, gpu_budget: int = 12, cost_weight: float = 0.5) -> None:
        self.pipeline: PipelineSpec = pipeline if isinstance(pipeline, PipelineSpec) else resolve_pipeline(pipeline)
        self.pattern, self.duration_s, self.interval_s = pattern, duration_s, interval_s
        self.gpu_budget, self.cost_weight = gpu_budget, cost_weight
        n = len(self.pipeline.stages)
        if gpu_budget < sum(max(1, s.min_replicas) for s in self.pipeline.stages):
            raise ValueError(f"gpu_budget {gpu_budget} is below the stages' minimum replicas")
        self.action_space = gym.spaces.MultiDiscrete([3] * n)
        self.observation_space = gym.spaces.Box(0.0, 4.0, shape=(n * FEATURES_PER_STAGE + 2,), dtype=np.float32)
        self._max_cost = gpu_budget * max(s.price_per_hour for s in self.pipeline.stages)
        self.sim: PipelineSim | None = None
        self._capacity: dict[str, float] | None = None

    def _observe(self) -> np.ndarray:
        return observe(self.sim.snapshot(), self.gpu_budget)  # type: ignore[union-attr]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        patterns = [p.strip() for p in self.pattern.split(",") if p.strip()]
        pattern = patterns[int(self.np_random.integers(len(patterns)))]
        base, peak = rates_for(self.pipeline.name)
        workload = pipeline_workload(pattern, seed=int(self.np_random.integers(2**31)), duration_s=self.duration_s,
                                     base_rate=base, peak_rate=peak)
        self.sim = PipelineSim(self.pipeline, workload, capacity=self._capacity)
        self._capacity = self.sim.capacity
        return self._observe(), {"pattern": pattern, "pipeline": self.pipeline.name}

    def step(self, action):
        sim = self.sim
        assert sim is not None, "call reset() first"
        snap = sim.snapshot()
        deltas = np.asarray(action, dtype=np.int64) - 1
        wanted = {s.name: s.desired + int(d) for s, d in zip(snap.stages, deltas)}
        replicas = bound(wanted, snap, self.gpu_budget)
        for name, n in replicas.items():
            if n != sim.stage(name).desired:
                sim.scale(name, n)
        sim.step(self.interval_s)
        after = sim.snapshot()
        p99 = after.p99_s if math.isfinite(after.p99_s) else 0.0
        excess = max(0.0, p99 / self.pipeline.slo_p99_s - 1.0)
        reward = -min(10.0, excess) - self.cost_weight * after.cost_rate_per_hour / self._max_cost
        terminated = sim.now >= self.duration_s
        info = {"p99_s": p99, "replicas": replicas, "cost_usd": sim.cost_usd()}
        return self._observe(), float(reward), bool(terminated), False, info
