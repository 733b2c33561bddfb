"""Iteration time from GPU specs, model shape and engine mode, with a few calibrated efficiencies.

One iteration runs ``T`` tokens (new prompt tokens plus one per decoding
sequence) through the decoder layers, samples ``S`` sequences (the decoding
ones plus each prompt that finishes a chunk) and attends over the cached
context. Kernels run one after the other, so the times of the parts add. A
part that does ``F`` FLOPs and moves ``B`` bytes takes the smooth roofline
``sqrt((F / (peak * e_c))**2 + (B / (bandwidth * e_m))**2)``: the larger of
the two bounds far from the ridge, about 1.4 times it at the ridge, where a
real kernel is neither purely compute- nor memory-bound.

Per iteration (``L`` layers, hidden ``h``, intermediate ``i``, KV width
``kv = kv_heads * head_dim``, vocabulary ``V``, bf16 weights):

- **linear layers**: ``2 * T * L * P`` FLOPs against the ``2 * L * P`` weight
  bytes read once (``P`` = q, k, v, o, gate, up, down weights of one layer);
- **elementwise kernels** (norms, rotary, residuals, activation, cache
  writes): ``T * (L * (a_h * h + a_kv * kv + a_i * i) + a_t * h)`` bytes, the
  counts ``a`` of the engine mode (:mod:`simulator.profiles.engines`);
- **LM head** (per sampled sequence): ``2 * S * h * V`` FLOPs against the
  ``2 * h * V`` head weights, plus ``S * V * logit_bytes`` for the logits: the
  vocabulary term;
- **prefill attention**: ``4 * L * h`` FLOPs per (query, attended position)
  pair, ``prefill_context`` of them: quadratic in the prompt;
- **decode attention**: per cached token, ``4 * L * h`` FLOPs and the KV bytes
  ``2 * L * kv * 2``, read by the attention kernel (once, or ``heads /
  kv_heads`` times where the engine expands grouped heads) and passed over by
  the engine's copy kernels (``torch.cat`` in eager mode): linear in context;
- **overhead**: ``kernel_us`` per kernel launched (the floor of a tiny
  kernel's duration), ``kernels_per_layer * L + kernels_per_iteration`` kernels.
- **host floor** (``timing="wall"``, engines without CUDA graphs): the
  iteration never takes less than ``host_kernel_us`` per kernel launched,
  the time Python and the driver need to issue them.

Every term is non-decreasing in every argument, and decode attention is
exactly linear in ``decode_context`` (both of its bounds are), so the model is
affine in ``decode_context`` above the host floor, as the engine's macro steps
assume. Tensor parallelism splits every term over ``tp`` GPUs (no
communication cost is modelled).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from simulator.profiles.engines import EngineMode, get_engine
from simulator.profiles.shapes import ModelShape
from simulator.profiles.specs import GpuSpec

#: The efficiencies and per-kernel times a calibration fits (kernel timing), in order.
PARAM_NAMES = ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "kernel_us")
#: Fitted on wall-clock timings only.
WALL_PARAM_NAMES = ("host_kernel_us",)
DTYPE_BYTES = 2
TIMINGS = ("kernel", "wall")


@dataclass(frozen=True)
class CalibrationParams:
    """Shares of the datasheet peak that kernels reach, and per-kernel times.

    :param compute_eff: GEMM throughput, fraction of dense bf16 peak.
    :param memory_eff: streaming kernels (weights, activations, copies), fraction of HBM bandwidth.
    :param attention_compute_eff: attention (prefill), fraction of peak.
    :param attention_memory_eff: the decode attention kernel reading the KV cache, fraction of bandwidth;
        it belongs to the attention kernel of ``engine`` (see :mod:`simulator.profiles.engines`).
    :param kernel_us: GPU time of a kernel beyond its bytes and FLOPs (launch ramp, tiny kernels), microseconds.
    :param host_kernel_us: host time to issue one kernel in eager mode (``wall`` timing), microseconds.
    :param engine: the engine mode the profiles were measured with.
    :param source: what the parameters were fitted on.
    :param fit: the fit's errors and date (written by the calibration).
    """

    compute_eff: float = 0.7
    memory_eff: float = 0.8
    attention_compute_eff: float = 0.4
    attention_memory_eff: float = 0.15
    kernel_us: float = 2.0
    host_kernel_us: float = 25.0
    engine: str = "eager"
    source: str = "uncalibrated priors"
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in PARAM_NAMES + WALL_PARAM_NAMES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        get_engine(self.engine)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def __reduce__(self) -> tuple:  # copy and pickle through the constructor (also when compiled, see simulator.compiled)
        return CalibrationParams, tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_mapping(cls, data: object, where: str = "calibration") -> CalibrationParams:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: calibration parameters must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown calibration field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: invalid calibration parameters: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, where: str = "calibration") -> CalibrationParams:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON: {exc}") from exc
        return cls.from_mapping(data, where)

    @classmethod
    def load(cls, path: str | Path) -> CalibrationParams:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read calibration: {exc}") from exc
        return cls.from_json(text, str(path))

    def vector(self, names: tuple[str, ...] = PARAM_NAMES) -> list[float]:
        return [float(getattr(self, n)) for n in names]


class SpecLatencyModel:
    """:class:`~simulator.profiles.latency.IterationTimeModel` from a GPU spec, a model shape, an engine mode and a calibration.

    :param tp: tensor-parallel degree (every term split over ``tp`` GPUs; no communication cost).
    :param engine: engine mode name or :class:`EngineMode` (``paged`` is what vLLM runs).
    :param timing: ``kernel`` (GPU time) or ``wall`` (with the eager host floor).
    """

    def __init__(self, gpu: GpuSpec, shape: ModelShape, params: CalibrationParams, *, tp: int = 1,
                 engine: str | EngineMode = "paged", timing: str = "kernel") -> None:
        if tp < 1:
            raise ValueError(f"tp must be >= 1, got {tp}")
        if timing not in TIMINGS:
            raise ValueError(f"timing must be 'kernel' or 'wall', got {timing!r}")
        mode = get_engine(engine)
        self.gpu, self.shape, self.params, self.tp, self.mode, self.timing = gpu, shape, params, tp, mode, timing
        p = params
        peak, bw = gpu.peak_bf16_flops * tp, gpu.memory_bandwidth * tp
        flops_s, bytes_s = peak * p.compute_eff / 1000.0, bw * p.memory_eff / 1000.0  # per millisecond
        s = shape
        layers, h, kv = s.num_hidden_layers, s.hidden_size, s.kv_dim
        self.attention_memory_eff = p.attention_memory_eff if get_engine(p.engine).attention_kernel == mode.attention_kernel else mode.attention_memory_eff
        # Precomputed coefficients (ms per unit), so iteration_ms is plain float arithmetic.
        self._lin_c = 2.0 * s.linear_params / flops_s
        self._lin_m = DTYPE_BYTES * s.linear_params / bytes_s
        act = layers * (mode.act_bytes_hidden * h + mode.act_bytes_kv * kv + mode.act_bytes_intermediate * s.intermediate_size)
        self._act = (act + mode.act_bytes_token * h) / bytes_s
        self._head_c = 2.0 * s.lm_head_params / flops_s
        self._head_m = DTYPE_BYTES * s.lm_head_params / bytes_s
        self._logits = s.vocab_size * mode.logit_bytes / bytes_s
        attn_flops = 4.0 * layers * h / (peak * p.attention_compute_eff / 1000.0)
        self._attn_p = attn_flops
        copy_passes, read_passes = mode.kv_passes(s.num_attention_heads / s.num_key_value_heads)
        kv_bytes = s.kv_bytes_per_token(DTYPE_BYTES)
        kv_read = kv_bytes * read_passes / (bw * self.attention_memory_eff / 1000.0)
        self._attn_d = math.sqrt(attn_flops * attn_flops + kv_read * kv_read) + kv_bytes * copy_passes / bytes_s
        self.kernels = mode.kernels_per_layer * layers + mode.kernels_per_iteration
        self._overhead = p.kernel_us * self.kernels / 1000.0
        self._floor = p.host_kernel_us * self.kernels / 1000.0 if timing == "wall" and not mode.cuda_graphs else 0.0
        self._decode_times: dict[int, Callable[[float], float]] = {}

    def __reduce__(self) -> tuple:
        """Copy and pickle through the constructor (the coefficients and the decode-time cache are rebuilt)."""
        return _restore_model, (self.gpu, self.shape, self.params, self.tp, self.mode, self.timing)

    def terms(self, prefill_tokens: float, prefill_context: float, decode_batch: float, decode_context: float, prefill_seqs: float = 1) -> dict[str, float]:
        """The parts of one iteration in milliseconds (their sum is the GPU time; ``host_floor`` bounds it below)."""
        tokens = prefill_tokens + decode_batch
        sampled = decode_batch + (prefill_seqs if prefill_tokens else 0)
        return {
            "linear": math.hypot(self._lin_c * tokens, self._lin_m),
            "elementwise": self._act * tokens,
            "lm_head": math.hypot(self._head_c * sampled, self._head_m) + self._logits * sampled,
            "prefill_attention": self._attn_p * prefill_context,
            "decode_attention": self._attn_d * decode_context,
            "overhead": self._overhead,
            "host_floor": self._floor,
        }

    def iteration_ms(self, prefill_tokens: float, prefill_context: float, decode_batch: float, decode_context: float, prefill_seqs: float = 1) -> float:
        tokens = prefill_tokens + decode_batch
        total = (self._batch_ms(tokens, decode_batch + (prefill_seqs if prefill_tokens else 0))
                 + self._attn_p * prefill_context + self._attn_d * decode_context)
        return total if total > self._floor else self._floor

    def _batch_ms(self, tokens: float, sampled: float) -> float:
        """The terms that do not depend on the context, summed in :meth:`iteration_ms`'s order."""
        lin = self._lin_c * tokens
        head = self._head_c * sampled
        return (self._overhead + math.sqrt(lin * lin + self._lin_m * self._lin_m) + self._act * tokens
                + math.sqrt(head * head + self._head_m * self._head_m) + self._logits * sampled)

    def decode_time(self, batch: int) -> Callable[[float], float]:
        """``iteration_ms(0, 0.0, batch, c)`` as a function of ``c`` alone, bit for bit.

        The engine asks this most (decode runs); with the batch fixed, the time is
        one multiply-add (adding the zero prefill term changes no bit).
        """
        ms = self._decode_times.get(batch)
        if ms is None:
            intercept, slope, floor = self._batch_ms(batch, batch), self._attn_d, self._floor

            def ms(decode_context: float) -> float:
                total = intercept + slope * decode_context
                return total if total > floor else floor

            self._decode_times[batch] = ms
        return ms

    def prefill_ms(self, batch: int, prompt_len: int) -> float:
        return self.iteration_ms(batch * prompt_len, batch * prompt_len * (prompt_len + 1) / 2.0, 0, 0.0, prefill_seqs=batch)

    def decode_ms(self, batch: int, context_len: int) -> float:
        return self.iteration_ms(0, 0.0, batch, float(batch * context_len))

    def decode_kv_bytes(self, batch: int, context_len: int) -> tuple[float, float]:
        """KV-cache bytes (moved by copy kernels, read by attention) of one decode step."""
        copy_passes, read_passes = self.mode.kv_passes(self.shape.num_attention_heads / self.shape.num_key_value_heads)
        cached = batch * context_len * self.shape.kv_bytes_per_token(DTYPE_BYTES) / self.tp
        return cached * copy_passes, cached * read_passes


def _restore_model(gpu: GpuSpec, shape: ModelShape, params: CalibrationParams, tp: int, mode: EngineMode, timing: str) -> SpecLatencyModel:
    return SpecLatencyModel(gpu, shape, params, tp=tp, engine=mode, timing=timing)
