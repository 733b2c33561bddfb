"""What an LLM stage's replicas run: the latency model and engine limits of its GPU and model.

A ``decode`` stage receives the KV cache from the prefill pool, so its
replicas never compute a prompt: :class:`DecodeOnlyModel` prices an
iteration as its decode step alone (a prompt-only iteration costs
:data:`KV_ADMIT_MS`, the time to register a transferred cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from simulator.engine.capacity import GIB, kv_capacity_tokens
from simulator.engine.replica import EngineConfig
from simulator.pipeline.spec import StageSpec
from simulator.profiles.latency import IterationTimeModel

#: Time of an iteration that only admits transferred KV caches (no decode running), ms.
KV_ADMIT_MS = 0.2


@dataclass(frozen=True)
class DecodeOnlyModel:
    """An iteration-time model whose prefill work is free: the prompt's KV arrives from a prefill pool."""

    inner: IterationTimeModel

    def iteration_ms(self, prefill_tokens: int, prefill_context: float, decode_batch: int, decode_context: float,
                     prefill_seqs: int = 1) -> float:
        if decode_batch:
            return self.inner.iteration_ms(0, 0.0, decode_batch, decode_context)
        return KV_ADMIT_MS

    def prefill_ms(self, batch: int, prompt_len: int) -> float:
        return KV_ADMIT_MS

    def decode_ms(self, batch: int, context_len: int) -> float:
        return self.inner.decode_ms(batch, context_len)


@lru_cache(maxsize=32)
def _llm_runtime(gpu: str, model: str, decode_only: bool) -> tuple[IterationTimeModel, EngineConfig]:
    from simulator.profiles import default_latency_model, get_gpu, load_shape

    spec, shape = get_gpu(gpu), load_shape(model)
    latency: IterationTimeModel = default_latency_model(gpu=gpu, model=model)
    capacity = kv_capacity_tokens(spec.memory_gib * GIB, shape.weight_bytes(), shape.kv_bytes_per_token(), gpu_memory_utilization=0.9)
    return (DecodeOnlyModel(latency) if decode_only else latency), EngineConfig(kv_capacity_tokens=capacity)


def llm_runtime(stage: StageSpec) -> tuple[IterationTimeModel, EngineConfig]:
    """Latency model and engine limits of one replica of an LLM stage (shared between stages alike)."""
    if not stage.is_llm:
        raise ValueError(f"stage {stage.name} is a {stage.kind} stage, not an LLM stage")
    return _llm_runtime(stage.gpu, stage.model, stage.kind == "decode")
