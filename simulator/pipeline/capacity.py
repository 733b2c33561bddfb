"""What one replica of a stage serves: requests per second, concurrency at capacity, unloaded service time.

A batch stage at full batches serves ``max_batch / (base_s + per_item_s * max_batch)``
with ``max_batch`` requests in service. An LLM stage's figures are measured on the
replica engine at the default SLO (:func:`simulator.planning.capacity.max_rate`) for
the workload's mean token lengths: a prefill stage generates one token, a decode
stage computes no prompt; its concurrency at capacity is that trial's (Little's law).
"""

from __future__ import annotations

from functools import lru_cache

from controller.slo import SLO
from simulator.pipeline.runtime import llm_runtime
from simulator.pipeline.spec import StageSpec


def batch_capacity_rps(stage: StageSpec) -> float:
    """Full-batch throughput of one replica of a batch stage."""
    return stage.max_batch / (stage.base_s + stage.per_item_s * stage.max_batch)


def _stage_output(stage: StageSpec, output_mean: int) -> int:
    return 1 if stage.kind == "prefill" else max(1, output_mean - (1 if stage.kind == "decode" else 0))


@lru_cache(maxsize=128)
def _llm_capacity_trial(stage: StageSpec, prompt_mean: int, output_mean: int) -> tuple[float, float]:
    from simulator.planning.capacity import max_rate

    model, engine = llm_runtime(stage)
    best, _ = max_rate(model, engine, SLO(), float(prompt_mean), float(_stage_output(stage, output_mean)), requests=400, iterations=10)
    return float(best.rate), float(best.concurrency)


def _llm_capacity(stage: StageSpec, prompt_mean: int, output_mean: int) -> float:
    return _llm_capacity_trial(stage, prompt_mean, output_mean)[0]


def stage_capacity_rps(stage: StageSpec, prompt_mean: float = 1000.0, output_mean: float = 130.0) -> float:
    """Requests per second one replica of ``stage`` serves (LLM stages: at the default SLO, for these mean lengths)."""
    if stage.kind == "batch":
        return batch_capacity_rps(stage)
    return _llm_capacity(stage, max(1, round(prompt_mean)), max(1, round(output_mean)))


def stage_concurrency_at_capacity(stage: StageSpec, prompt_mean: float = 1000.0, output_mean: float = 130.0) -> float:
    """Requests inside one replica (in service and queued in its engine) when it serves its capacity."""
    if stage.kind == "batch":
        return float(stage.max_batch)
    return _llm_capacity_trial(stage, max(1, round(prompt_mean)), max(1, round(output_mean)))[1]


def stage_service_s(stage: StageSpec, prompt_mean: float = 1000.0, output_mean: float = 130.0) -> float:
    """Seconds a lone request spends in one replica of ``stage`` (no queue, no batching)."""
    if stage.kind == "batch":
        return stage.base_s + stage.per_item_s
    model, _ = llm_runtime(stage)
    prompt, output = max(1, round(prompt_mean)), _stage_output(stage, max(1, round(output_mean)))
    prefill = model.prefill_ms(1, prompt) if stage.kind != "decode" else 0.0
    decode = sum(model.decode_ms(1, prompt + k) for k in range(1, output)) if output > 1 else 0.0
    return (prefill + decode) / 1000.0
