"""Fit a replica's engine efficiency to what its vLLM metrics show.

The data are windows of one pod's history: increases of vLLM's histogram sums
and counts and token counters, and the mean running batch. Two quantities
follow from the engine model with little else assumed:

- **prefill time** (``TTFT - queue time``, per request): the iteration that
  prefills the request's prompt. Prompts that arrive while an iteration runs
  are prefilled together in the next one, so a request shares its prefill
  iteration with ``lambda * t`` other prompts on average (size-biased Poisson);
- **inter-token latency** (``ITL_sum / ITL_count``): the decoding-batch-weighted
  mean iteration time, decode-only iterations plus the prefill iterations the
  decoding sequences sit through.

The fit scales the compute-side efficiencies (``compute_eff``,
``attention_compute_eff``) by one factor and the memory-side ones
(``memory_eff``, ``attention_memory_eff``) by another, starting from a base
calibration; least squares on the log ratios of predicted to observed means,
windows weighted by the square root of their requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from simulator.profiles.engines import get_engine
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from simulator.profiles.shapes import ModelShape
from simulator.profiles.specs import GpuSpec


@dataclass(frozen=True)
class Window:
    """One pod over one window of its history (increases over the window; seconds and tokens).

    :param running: mean of ``vllm:num_requests_running`` over the window.
    :param busy: mean GPU utilisation over the window as a fraction (``DCGM_FI_DEV_GPU_UTIL / 100``); NaN if absent.
    """

    pod: str
    start_s: float
    duration_s: float
    requests: float
    prompt_tokens: float
    generation_tokens: float
    itl_sum: float
    itl_count: float
    ttft_sum: float
    ttft_count: float
    queue_sum: float
    queue_count: float
    running: float
    busy: float = math.nan

    @property
    def usable(self) -> bool:
        """Enough finished requests and decode tokens for means (at least 3 requests)."""
        return self.requests >= 3 and self.ttft_count >= 3 and self.queue_count >= 3 and self.itl_count >= 10 and self.running > 0

    @property
    def itl_s(self) -> float:
        return self.itl_sum / self.itl_count

    @property
    def prefill_s(self) -> float:
        return self.ttft_sum / self.ttft_count - self.queue_sum / self.queue_count

    @property
    def mean_prompt(self) -> float:
        return self.prompt_tokens / self.requests

    @property
    def mean_output(self) -> float:
        return self.generation_tokens / self.requests


@dataclass(frozen=True)
class EngineFit:
    """The fitted efficiency scales, the calibration they give, and the errors of its predictions."""

    compute_scale: float
    memory_scale: float
    params: CalibrationParams
    fit_windows: int
    held_out_windows: int
    fit_error: dict[str, float]        # MAPE of the predicted means on the fitted windows: "itl", "prefill"
    held_out_error: dict[str, float]   # the same on the held-out windows


def predict_window(model: SpecLatencyModel, w: Window, max_batched_tokens: int = 2048) -> tuple[float, float]:
    """Predicted (mean inter-token latency, mean prefill time) of a window, seconds.

    Decoding iterations: ``itl_count / batch`` of them, ``requests / k`` prefill iterations of
    ``k`` prompts among them (``k``: Poisson arrivals during the iteration before, given at least
    one), the rest decode-only. A request's own prefill iteration holds, besides its prompt, the
    prompts that arrive during the iteration it arrived in (length-biased: long iterations catch
    more arrivals) when the engine is busy. Three fixed-point rounds settle the two.
    """
    batch = max(1.0, w.running / w.busy if w.busy > 0 and math.isfinite(w.busy) else w.running)
    context = w.mean_prompt + w.mean_output / 2.0
    decode_ms = model.iteration_ms(0, 0.0, batch, batch * context)
    rate = w.requests / w.duration_s / 1000.0  # per millisecond
    iterations = max(w.itl_count / batch, 1.0)

    def prefill_iteration(prompts: float) -> float:
        tokens = prompts * w.mean_prompt
        budget = max(1.0, max_batched_tokens - batch)
        chunks = max(1, math.ceil(tokens / budget))
        chunk = tokens / chunks
        total = 0.0
        for i in range(chunks):  # chunk i attends to the chunks before it
            total += model.iteration_ms(chunk, chunk * (i * chunk + (chunk + 1) / 2.0) / prompts, batch, batch * context, max(1, round(prompts)))
        return total

    arrivals = rate * decode_ms  # prompts arriving during one iteration
    for _ in range(3):
        per_iteration = arrivals / -math.expm1(-arrivals) if arrivals > 1e-9 else 1.0
        mixed_ms = prefill_iteration(per_iteration)
        mixed = min(iterations, w.requests / per_iteration)
        plain = iterations - mixed
        busy_ms = plain * decode_ms + mixed * mixed_ms
        lengthy = (plain * decode_ms**2 + mixed * mixed_ms**2) / busy_ms
        busy = min(1.0, busy_ms / (w.duration_s * 1000.0))
        arrivals = rate * lengthy * busy
    prefill_ms = prefill_iteration(1.0 + arrivals)
    itl_ms = busy_ms / iterations
    return itl_ms / 1000.0, prefill_ms / 1000.0


def _scaled(base: CalibrationParams, compute: float, memory: float) -> CalibrationParams:
    return replace(base, compute_eff=min(1.0, base.compute_eff * compute), attention_compute_eff=min(1.0, base.attention_compute_eff * compute),
                   memory_eff=min(1.0, base.memory_eff * memory), attention_memory_eff=min(1.0, base.attention_memory_eff * memory))


def _errors(model: SpecLatencyModel, windows: Sequence[Window], max_batched_tokens: int) -> dict[str, float]:
    if not windows:
        return {}
    itl, prefill = [], []
    for w in windows:
        p_itl, p_prefill = predict_window(model, w, max_batched_tokens)
        itl.append(abs(p_itl / w.itl_s - 1.0))
        prefill.append(abs(p_prefill / w.prefill_s - 1.0))
    return {"itl": float(np.mean(itl)), "prefill": float(np.mean(prefill))}


def fit_engine(windows: Sequence[Window], gpu: GpuSpec, shape: ModelShape, base: CalibrationParams, *, engine: str = "paged",
               timing: str = "kernel", max_batched_tokens: int = 2048, held_out_fraction: float = 0.25) -> EngineFit:
    """Fit on the earlier windows, report the error on the last ``held_out_fraction`` of the history (by time).

    A ``base`` calibrated with another attention kernel (e.g. the shipped eager one for a vLLM
    cluster) starts from the engine's prior for the decode attention kernel.
    """
    mode = get_engine(engine)
    if get_engine(base.engine).attention_kernel != mode.attention_kernel:
        base = replace(base, engine=mode.name, attention_memory_eff=mode.attention_memory_eff)
    usable = sorted((w for w in windows if w.usable and w.prefill_s > 0), key=lambda w: w.start_s)
    if len(usable) < 4:
        raise ValueError(f"only {len(usable)} windows with enough traffic to fit the engine (need 4: at least 3 finished requests each)")
    cut = sorted({w.start_s for w in usable})
    split_t = cut[min(len(cut) - 1, max(1, int(round(len(cut) * (1.0 - held_out_fraction)))))]
    fit_set = [w for w in usable if w.start_s < split_t]
    held = [w for w in usable if w.start_s >= split_t]
    weights = np.sqrt(np.array([w.requests for w in fit_set]))
    observed = np.array([[w.itl_s, w.prefill_s] for w in fit_set])

    def model_for(x: np.ndarray) -> SpecLatencyModel:
        return SpecLatencyModel(gpu, shape, _scaled(base, float(x[0]), float(x[1])), engine=engine, timing=timing)

    def residuals(x: np.ndarray) -> np.ndarray:
        model = model_for(x)
        predicted = np.array([predict_window(model, w, max_batched_tokens) for w in fit_set])
        return (np.log(predicted / observed) * weights[:, None]).ravel()

    upper = [1.0 / max(base.compute_eff, base.attention_compute_eff), 1.0 / max(base.memory_eff, base.attention_memory_eff)]
    result = least_squares(residuals, [min(1.0, upper[0] * 0.99), min(1.0, upper[1] * 0.99)], bounds=([0.01, 0.01], upper), x_scale="jac",
                           loss="soft_l1", f_scale=0.1 * float(weights.mean()))
    compute, memory = (float(v) for v in result.x)
    model = model_for(result.x)
    params = _scaled(base, compute, memory)
    return EngineFit(compute, memory, params, len(fit_set), len(held), _errors(model, fit_set, max_batched_tokens), _errors(model, held, max_batched_tokens))
