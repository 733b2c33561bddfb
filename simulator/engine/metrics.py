"""Cumulative serving metrics under the names vLLM and the DCGM exporter use.

One :class:`MetricSink` can be shared by many replicas: its counters and
histogram buckets are then the ``sum by (le)`` over those replicas, exactly
what the PromQL of :mod:`controller.signals` aggregates online.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from controller import signals as sig


@dataclass
class Histogram:
    """Cumulative bucket counts (non-cumulative per bucket; last entry is ``+Inf``)."""

    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0
    count: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, weight: float = 1.0) -> None:
        # Prometheus buckets are upper-inclusive: value <= bound.
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight
        self.count += weight

    def snapshot(self) -> tuple[float, ...]:
        return tuple(self.counts)


@dataclass
class MetricSink:
    """Counters and histograms of one or more replicas."""

    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    request_success: float = 0.0
    busy_seconds: float = 0.0
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {name: Histogram(bounds) for name, bounds in sig.HISTOGRAM_BUCKETS.items()}
    )

    def __post_init__(self) -> None:
        h = self.histograms
        self._ttft, self._e2e, self._queue, self._itl = h[sig.TTFT_HIST], h[sig.E2E_HIST], h[sig.QUEUE_HIST], h[sig.ITL_HIST]

    def observe_request(self, ttft_s: float, tpot_s: float, e2e_s: float, queue_s: float, output_tokens: int) -> None:
        """Record one finished request.

        vLLM observes one inter-token latency per generated token after the
        first; we record the request's mean gap with that weight, which keeps
        the token-weighted distribution and costs one observation.
        """
        self.request_success += 1
        # Histogram.observe written out (once per finished request, the engine's hottest bookkeeping).
        for h, value in ((self._ttft, ttft_s), (self._e2e, e2e_s), (self._queue, queue_s)):
            h.counts[bisect_left(h.bounds, value)] += 1.0
            h.total += value
            h.count += 1.0
        if output_tokens > 1:
            self._itl.observe(tpot_s, output_tokens - 1)

    def counters(self) -> dict[str, float]:
        """The counter values under their Prometheus names."""
        return {
            sig.PROMPT_TOKENS: self.prompt_tokens,
            sig.GENERATION_TOKENS: self.generation_tokens,
            sig.REQUEST_SUCCESS: self.request_success,
        }
