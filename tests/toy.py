"""Small, exactly known models for engine and cluster tests."""

from __future__ import annotations

import numpy as np

from simulator.workloads.workload import Workload


class AffineLatency:
    """iteration_ms = base + a*prefill_tokens + b*decode_batch + c*decode_context (+ d*prefill_context)."""

    def __init__(self, base: float = 5.0, per_prefill_token: float = 0.01, per_seq: float = 0.05,
                 per_context_token: float = 1e-5, per_attention: float = 0.0, scale: float = 1.0) -> None:
        self.base, self.a, self.b, self.c, self.d, self.scale = base, per_prefill_token, per_seq, per_context_token, per_attention, scale

    def iteration_ms(self, prefill_tokens, prefill_context, decode_batch, decode_context, prefill_seqs=1):
        return self.scale * (self.base + self.a * prefill_tokens + self.b * decode_batch + self.c * decode_context + self.d * prefill_context)

    def prefill_ms(self, batch, prompt_len):
        return self.iteration_ms(batch * prompt_len, batch * prompt_len * (prompt_len + 1) / 2, 0, 0)

    def decode_ms(self, batch, context_len):
        return self.iteration_ms(0, 0.0, batch, batch * context_len)


def poisson_workload(rate: float, duration: float, seed: int = 0, prompt=(100, 2000), output=(10, 400), name="poisson") -> Workload:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration)
    arrivals = np.sort(rng.uniform(0, duration, n))
    return Workload(arrivals, rng.integers(*prompt, n), rng.integers(*output, n), duration, name)
