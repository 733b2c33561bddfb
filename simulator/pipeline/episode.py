"""One controller running one pipeline on one workload: the control loop and its metrics.

Every ``interval_s`` the controller reads the snapshot and sets the replicas
of every stage; every ``bottleneck_every`` decisions the detector's answer is
scored against the simulator's ground truth (ticks without a bottleneck are
not scored). At the end the pipeline is drained, so every request counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.pipeline.bottleneck import detect_bottleneck, detect_bottleneck_v1, true_bottleneck
from simulator.pipeline.controllers import PipelineController
from simulator.pipeline.sim import PipelineSim
from simulator.pipeline.snapshot import PipelineSnapshot
from simulator.pipeline.spec import PipelineSpec
from simulator.workloads.workload import Workload


@dataclass
class EpisodeResult:
    """Metrics of one episode and its decision records."""

    metrics: dict[str, float]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    timeline: dict[str, list[float]] = field(default_factory=dict)
    #: the scored snapshots and the simulator's true bottleneck of each
    cases: list[tuple[PipelineSnapshot, str]] = field(default_factory=list)


def latency_metrics(latencies: list[float], slo_s: float) -> dict[str, float]:
    if not latencies:
        return {"p99_s": math.nan, "mean_s": math.nan, "slo_attainment": math.nan}
    values = np.asarray(latencies)
    return {"p99_s": float(np.percentile(values, 99)), "mean_s": float(values.mean()),
            "slo_attainment": float(np.mean(values <= slo_s))}


def run_episode(spec: PipelineSpec, workload: Workload, controller: PipelineController, *, interval_s: float = 15.0,
                bottleneck_every: int = 0, bottleneck_horizon_s: float = 30.0, capacity: dict[str, float] | None = None,
                drain_max_s: float = 1800.0) -> EpisodeResult:
    """Run ``controller`` on ``spec`` over ``workload``; ``bottleneck_every=0`` skips the bottleneck scoring."""
    sim = PipelineSim(spec, workload, capacity=capacity)
    state = controller.initial_state()
    decisions: list[dict[str, Any]] = []
    timeline: dict[str, list[float]] = {"t": [], "p99_s": [], **{f"replicas_{n}": [] for n in spec.names}}
    cases: list[tuple[PipelineSnapshot, str]] = []
    step = 0
    while sim.now < workload.duration_s:
        sim.step(interval_s)
        snapshot = sim.snapshot()
        if bottleneck_every and step % bottleneck_every == 0:
            truth = true_bottleneck(sim, bottleneck_horizon_s)
            if truth is not None:
                cases.append((snapshot, truth))
        decision, state = controller.decide(snapshot, state)
        for name, n in decision.replicas.items():
            if n != sim.stage(name).desired:
                sim.scale(name, n)
        decisions.append({"time_s": snapshot.time_s, "replicas": dict(decision.replicas), "reasons": list(decision.reasons),
                          **decision.record})
        timeline["t"].append(snapshot.time_s)
        timeline["p99_s"].append(snapshot.p99_s)
        for name in spec.names:
            timeline[f"replicas_{name}"].append(float(decision.replicas[name]))
        step += 1
    duration_gpu_s = sim.gpu_seconds()
    cost = sim.cost_usd()
    sim.finish(drain_max_s)
    metrics = latency_metrics(sim.latencies, spec.slo_p99_s)
    metrics |= {"cost_usd": cost, "gpu_hours": duration_gpu_s / 3600.0, "scale_events": float(sim.scale_events),
                "requests": float(sim.arrived), "completed": float(sim.completed), "unfinished": float(sim.in_flight),
                "bottleneck_accuracy": accuracy(cases), "bottleneck_accuracy_v1": accuracy(cases, detect_bottleneck_v1),
                "bottleneck_scored": float(len(cases))}
    return EpisodeResult(metrics, decisions, timeline, cases)


def accuracy(cases: list[tuple[PipelineSnapshot, str]], detector=detect_bottleneck) -> float:
    """Share of ``cases`` whose true bottleneck ``detector`` names (NaN without cases)."""
    return sum(detector(s) == truth for s, truth in cases) / len(cases) if cases else math.nan
