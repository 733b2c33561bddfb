"""Workloads for pipeline runs: the project's traffic patterns with token lengths that suit a chain.

Shorter prompts and outputs than the single-model presets (a RAG answer or a
spoken reply), so that the end-to-end P99 is set by queueing, which scaling
fixes, rather than by a few very long generations.
"""

from __future__ import annotations

from simulator.workloads.catalog import make_workload
from simulator.workloads.tokens import TokenDistribution
from simulator.workloads.workload import Workload

PIPELINE_TOKENS = TokenDistribution(prompt_median=512.0, prompt_sigma=0.5, prompt_max=4096,
                                    output_median=64.0, output_sigma=0.5, output_max=256)
#: Requests per second between which the patterns move (base, peak).
BASE_RATE, PEAK_RATE = 4.0, 30.0
PATTERNS = ("ramp", "periodic", "spike")
#: (base, peak) per built-in pipeline whose stages the default rates leave idle: a prefill replica serves
#: about 90 requests/s of these lengths, so the disaggregated pipeline runs at 5x the others' rates.
PIPELINE_RATES = {"disagg": (5.0 * BASE_RATE, 5.0 * PEAK_RATE)}


def rates_for(pipeline: str) -> tuple[float, float]:
    """(base, peak) requests per second for a pipeline by name (the defaults unless :data:`PIPELINE_RATES` has it)."""
    return PIPELINE_RATES.get(pipeline, (BASE_RATE, PEAK_RATE))


def pipeline_workload(pattern: str, *, seed: int, duration_s: float, base_rate: float = BASE_RATE,
                      peak_rate: float = PEAK_RATE) -> Workload:
    """A seeded ``ramp``, ``periodic`` or ``spike`` workload (any preset of :func:`make_workload` works)."""
    return make_workload(pattern, seed=seed, duration_s=duration_s, base_rate=base_rate, peak_rate=peak_rate, tokens=PIPELINE_TOKENS)
