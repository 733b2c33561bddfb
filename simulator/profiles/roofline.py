"""Iteration time from GPU specs and model shape, with a few calibrated efficiencies.

One iteration = the decoder layers over every token of the batch, attention,
and the LM head for the sequences that produce a token. Each part is
bounded by compute or by memory traffic (a roofline), and kernels run one
after the other, so their times add:

- **linear layers**: ``max(2 * linear_params * tokens / (peak * compute_eff),
  weight_bytes / (bandwidth * memory_eff))``;
- **LM head**: the same bound for ``hidden * vocab`` weights and one token per
  sequence that samples;
- **prefill attention**: ``4 * layers * hidden * prefill_context`` FLOPs at
  ``peak * attention_compute_eff`` (``prefill_context`` sums, over new tokens,
  the positions each attends to);
- **decode attention**: KV-cache bytes read, ``decode_context * kv_bytes_per_token``
  at ``bandwidth * attention_memory_eff``. A server with paged attention reads
  the grouped KV heads once; eager Hugging Face expands them to every query
  head first (``gqa_expanded``), moving ``heads / kv_heads`` times the bytes;
- **overhead**: a fixed time per iteration (launches, sampling, scheduling);
- **floor**: the host-side time below which an iteration never goes (eager
  mode's Python and kernel-launch gaps: ``max(floor, gpu time)``; about 0 for
  a CUDA-graph server).

All terms are non-decreasing in every argument and the model is affine in
``decode_context``, which the engine relies on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from simulator.profiles.shapes import ModelShape
from simulator.profiles.specs import GpuSpec

PARAM_NAMES = ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "overhead_ms", "floor_ms")


@dataclass(frozen=True)
class CalibrationParams:
    """Efficiencies (fractions of the datasheet peak) and a fixed overhead per iteration."""

    compute_eff: float = 0.6
    memory_eff: float = 0.8
    attention_compute_eff: float = 0.3
    attention_memory_eff: float = 0.5
    overhead_ms: float = 1.0
    floor_ms: float = 0.0
    timing: str = "kernel_ms"
    source: str = "uncalibrated defaults"
    mape: dict | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "calibration") -> CalibrationParams:
        try:
            data = json.loads(text)
            params = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{where}: invalid calibration parameters: {exc}") from exc
        for name in PARAM_NAMES:
            if not getattr(params, name) >= (0 if name in ("overhead_ms", "floor_ms") else 1e-9):
                raise ValueError(f"{where}: {name} must be positive")
        return params

    @classmethod
    def load(cls, path: Path) -> CalibrationParams:
        return cls.from_json(path.read_text(), str(path))

    def vector(self) -> list[float]:
        return [getattr(self, n) for n in PARAM_NAMES]


class SpecLatencyModel:
    """:class:`~simulator.profiles.latency.IterationTimeModel` from a GPU spec, a model shape and calibration.

    :param tp: tensor-parallel degree (weights, FLOPs and KV split over ``tp`` GPUs; no communication cost modelled).
    :param gqa_expanded: model eager attention that expands grouped KV heads (for calibrating on Hugging Face profiles).
    """

    def __init__(self, gpu: GpuSpec, shape: ModelShape, params: CalibrationParams, *, tp: int = 1, gqa_expanded: bool = False) -> None:
        if tp < 1:
            raise ValueError(f"tp must be >= 1, got {tp}")
        self.gpu, self.shape, self.params, self.tp = gpu, shape, params, tp
        p = params
        peak, bw = gpu.peak_bf16_flops * tp, gpu.memory_bandwidth * tp
        ms = 1000.0
        # Precomputed coefficients: every term is coefficient x argument.
        self._lin_compute = 2.0 * shape.linear_params / (peak * p.compute_eff) * ms
        self._lin_memory = 2.0 * shape.linear_params / (bw * p.memory_eff) * ms
        self._head_compute = 2.0 * shape.lm_head_params / (peak * p.compute_eff) * ms
        self._head_memory = 2.0 * shape.lm_head_params / (bw * p.memory_eff) * ms
        self._attn_prefill = 4.0 * shape.num_hidden_layers * shape.hidden_size / (peak * p.attention_compute_eff) * ms
        expand = shape.num_attention_heads / shape.num_key_value_heads if gqa_expanded else 1.0
        self._attn_decode = shape.kv_bytes_per_token() * expand / (bw * p.attention_memory_eff) * ms
        self._overhead = p.overhead_ms
        self._floor = p.floor_ms

    def iteration_ms(self, prefill_tokens: int, prefill_context: float, decode_batch: int, decode_context: float, prefill_seqs: int = 1) -> float:
        tokens = prefill_tokens + decode_batch
        sampled = decode_batch + (prefill_seqs if prefill_tokens else 0)
        linear = self._lin_compute * tokens
        if linear < self._lin_memory:
            linear = self._lin_memory
        head = self._head_compute * sampled
        if head < self._head_memory:
            head = self._head_memory
        total = self._overhead + linear + head + self._attn_prefill * prefill_context + self._attn_decode * decode_context
        return total if total > self._floor else self._floor

    def prefill_ms(self, batch: int, prompt_len: int) -> float:
        return self.iteration_ms(batch * prompt_len, batch * prompt_len * (prompt_len + 1) / 2.0, 0, 0.0, prefill_seqs=batch)

    def decode_ms(self, batch: int, context_len: int) -> float:
        return self.iteration_ms(0, 0.0, batch, float(batch * context_len))
