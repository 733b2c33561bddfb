"""``kis pipeline evaluate``: controllers x pipelines x patterns x seeds, each cell one episode.

Rows hold the mean over seeds of each metric (P99 and mean end-to-end
latency, SLO attainment, cost, GPU-hours, scale events, bottleneck accuracy
of the detector and of the previous one) and the per-seed values. A ``ppo``
controller needs a model trained for the pipeline (``ppo_models``); pipelines
without one get no ``ppo`` row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simulator.pipeline.controllers import PipelineController, PipelinePlanner
from simulator.pipeline.episode import run_episode
from simulator.pipeline.incontext import InContextController
from simulator.pipeline.spec import PipelineSpec
from simulator.pipeline.stagewise import Guarded, stage_hpa, stage_kpa
from simulator.pipeline.workloads import pipeline_workload, rates_for

CONTROLLERS = ("hpa", "kpa", "planner", "incontext", "ppo")
METRICS = ("p99_s", "mean_s", "slo_attainment", "cost_usd", "gpu_hours", "scale_events", "bottleneck_accuracy",
           "bottleneck_accuracy_v1")


def make_controller(name: str, spec: PipelineSpec, interval_s: float, selector: Any = None,
                    ppo_model: Any = None) -> PipelineController:
    """A controller by name, planning one cold start (the pipeline's longest) ahead; per-stage rules step
    through ``decide`` per stage, joint controllers through each stage's guardrails (:mod:`~simulator.pipeline.stagewise`)."""
    cold = max(s.cold_start_s for s in spec.stages)
    planner = PipelinePlanner(interval_s=interval_s, cold_start_s=cold)
    if name == "hpa":
        return stage_hpa(interval_s=interval_s)
    if name == "kpa":
        return stage_kpa(interval_s=interval_s)
    if name == "planner":
        return Guarded(planner)
    if name == "incontext":
        return Guarded(InContextController(planner=planner, selector=selector))
    if name == "ppo":
        if ppo_model is None:
            raise ValueError(f"controller ppo needs a model trained for {spec.name} (kis pipeline train, then --ppo DIR)")
        return Guarded(ppo_model, budget=ppo_model.gpu_budget)
    raise ValueError(f"unknown controller {name!r}; choose from {', '.join(CONTROLLERS)}")


def evaluate(pipelines: Sequence[PipelineSpec], patterns: Sequence[str], controllers: Sequence[str], seeds: Sequence[int], *,
             duration_s: float = 600.0, interval_s: float = 15.0, bottleneck_every: int = 4, selector: Any = None,
             ppo_models: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per pipeline, pattern and controller, metrics averaged over ``seeds``; ``ppo_models`` maps a
    pipeline's name to its loaded :class:`~simulator.pipeline.ppo.PpoController`."""
    rows = []
    ppo_models = ppo_models or {}
    for spec in pipelines:
        for pattern in patterns:
            base, peak = rates_for(spec.name)
            workloads = {seed: pipeline_workload(pattern, seed=seed, duration_s=duration_s, base_rate=base, peak_rate=peak)
                         for seed in seeds}
            for name in controllers:
                if name == "ppo" and spec.name not in ppo_models:
                    continue
                per_seed = []
                for seed in seeds:
                    controller = make_controller(name, spec, interval_s, selector, ppo_models.get(spec.name))
                    result = run_episode(spec, workloads[seed], controller, interval_s=interval_s, bottleneck_every=bottleneck_every)
                    per_seed.append({"seed": seed, **result.metrics,
                                     "fallbacks": sum(1 for d in result.decisions if d.get("fallback"))})
                row: dict[str, Any] = {"pipeline": spec.name, "pattern": pattern, "controller": name}
                for key in METRICS:
                    values = [r[key] for r in per_seed if math.isfinite(r[key])]
                    row[key] = float(np.mean(values)) if values else math.nan
                row["seeds"] = per_seed
                rows.append(row)
    return rows
