"""Requests per second one replica of a stage serves.

A batch stage at full batches serves ``max_batch / (base_s + per_item_s * max_batch)``.
An LLM stage's figure is measured on the replica engine at the default SLO
(:func:`simulator.planning.capacity.max_rate`) for the workload's mean token
lengths: a prefill stage generates one token, a decode stage computes no prompt.
"""

from __future__ import annotations

from functools import lru_cache

from controller.slo import SLO
from simulator.pipeline.runtime import llm_runtime
from simulator.pipeline.spec import StageSpec


def batch_capacity_rps(stage: StageSpec) -> float:
    """Full-batch throughput of one replica of a batch stage."""
    return stage.max_batch / (stage.base_s + stage.per_item_s * stage.max_batch)


@lru_cache(maxsize=128)
def _llm_capacity(stage: StageSpec, prompt_mean: int, output_mean: int) -> float:
    from simulator.planning.capacity import max_rate

    model, engine = llm_runtime(stage)
    output = 1 if stage.kind == "prefill" else max(1, output_mean - (1 if stage.kind == "decode" else 0))
    best, _ = max_rate(model, engine, SLO(), float(prompt_mean), float(output), requests=400, iterations=10)
    return float(best.rate)


def stage_capacity_rps(stage: StageSpec, prompt_mean: float = 1000.0, output_mean: float = 130.0) -> float:
    """Requests per second one replica of ``stage`` serves (LLM stages: at the default SLO, for these mean lengths)."""
    if stage.kind == "batch":
        return batch_capacity_rps(stage)
    return _llm_capacity(stage, max(1, round(prompt_mean)), max(1, round(output_mean)))
