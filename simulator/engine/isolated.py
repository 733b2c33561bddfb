"""What a request's latency would be on an otherwise idle replica: its floor under any scaling.

A request whose prompt alone takes longer than the TTFT bound to prefill (in
the engine's chunks of ``max_batched_tokens``), or whose decode steps alone
exceed the TPOT bound, misses the SLO however many replicas serve it. Training
counts only the misses that scaling could have avoided.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from controller.slo import SLO
from simulator.engine.replica import EngineConfig
from simulator.profiles.latency import IterationTimeModel


def isolated_ttft_s(model: IterationTimeModel, engine: EngineConfig, prompt_tokens: int) -> float:
    """Time to first token of a lone request: its prompt prefilled chunk by chunk, as the engine does."""
    budget, done, total_ms = engine.max_batched_tokens, 0, 0.0
    while done < prompt_tokens:
        chunk = min(prompt_tokens - done, budget)
        total_ms += model.iteration_ms(chunk, chunk * done + chunk * (chunk + 1) / 2.0, 0, 0.0, 1)
        done += chunk
    return total_ms / 1000.0


#: Per latency model (by identity, the model kept alive with its entry; compiled models take no weak references):
#: isolated TTFT by (token budget, prompt) and one-sequence decode time by context (episodes repeat lengths).
_TIMES: OrderedDict[int, tuple[IterationTimeModel, dict[tuple[int, int], float]]] = OrderedDict()
#: The models whose times are kept, most recent last.
_MODELS_KEPT = 16


def _times_of(model: IterationTimeModel) -> dict[tuple[int, int], float]:
    entry = _TIMES.get(id(model))
    if entry is None or entry[0] is not model:
        entry = _TIMES[id(model)] = (model, {})
        while len(_TIMES) > _MODELS_KEPT:
            _TIMES.popitem(last=False)
    _TIMES.move_to_end(id(model))
    return entry[1]


def feasible(model: IterationTimeModel, engine: EngineConfig, slo: SLO, prompt_tokens: np.ndarray,
             output_tokens: np.ndarray) -> np.ndarray:
    """Per request: could it meet ``slo`` on an idle replica (and fit the KV cache at all)?"""
    prompts = np.asarray(prompt_tokens, dtype=np.int64)
    outputs = np.asarray(output_tokens, dtype=np.int64)
    times = _times_of(model)
    budget = engine.max_batched_tokens
    unique, inverse = np.unique(prompts, return_inverse=True)
    ttft = np.array([_known(times, (budget, p), lambda p=p: isolated_ttft_s(model, engine, p)) for p in unique.tolist()])[inverse]
    # decode alone: one sequence at its mean context (key budget 0: not a prompt)
    contexts, where = np.unique(prompts + outputs // 2, return_inverse=True)
    tpot = np.array([_known(times, (0, c), lambda c=c: model.decode_ms(1, c)) for c in contexts.tolist()])[where] / 1000.0
    fits = prompts + outputs <= engine.kv_capacity_tokens
    return (ttft <= slo.ttft_s) & ((tpot <= slo.tpot_s) | (outputs <= 1)) & fits


def _known(times: dict[tuple[int, int], float], key: tuple[int, int], compute) -> float:
    value = times.get(key)
    if value is None:
        value = times[key] = compute()
    return value
