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

    def __reduce__(self) -> tuple:  # copy and pickle through the constructor (also when compiled, see simulator.compiled)
        return Histogram, (self.bounds, self.counts, self.total, self.count)


class MetricSink:
    """Counters and histograms of one or more replicas.

    Engines hand each finished request over with :meth:`add_finished` (a list
    append, the engine's hottest bookkeeping); the histograms observe them, in
    the order they were handed over, when :attr:`histograms` or
    :attr:`request_success` is next read.
    """

    def __init__(self) -> None:
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.busy_seconds = 0.0
        self._request_success = 0.0
        self._histograms = {name: Histogram(bounds) for name, bounds in sig.HISTOGRAM_BUCKETS.items()}
        h = self._histograms
        self._ttft, self._e2e, self._queue, self._itl = h[sig.TTFT_HIST], h[sig.E2E_HIST], h[sig.QUEUE_HIST], h[sig.ITL_HIST]
        self._pending: list[tuple] = []

    def add_finished(self, done: tuple) -> None:
        """Record a finished request: a :class:`~simulator.engine.replica.FinishedRequest` (or a tuple of its fields)."""
        self._pending.append(done)

    def __reduce__(self) -> tuple:
        """Copy and pickle: the counters, the histograms and the requests not yet observed."""
        return _restore_sink, (self.prompt_tokens, self.generation_tokens, self.busy_seconds, self._request_success, self._histograms,
                               self._pending)

    @property
    def histograms(self) -> dict[str, Histogram]:
        self._observe_pending()
        return self._histograms

    @property
    def request_success(self) -> float:
        self._observe_pending()
        return self._request_success

    def observe_request(self, ttft_s: float, tpot_s: float, e2e_s: float, queue_s: float, output_tokens: int) -> None:
        """Record one finished request from its latencies.

        vLLM observes one inter-token latency per generated token after the
        first; we record the request's mean gap with that weight, which keeps
        the token-weighted distribution and costs one observation.
        """
        self._observe_pending()
        self._request_success += 1
        for h, value in ((self._ttft, ttft_s), (self._e2e, e2e_s), (self._queue, queue_s)):
            h.observe(value)
        if output_tokens > 1:
            self._itl.observe(tpot_s, output_tokens - 1)

    def _observe_pending(self) -> None:
        """:meth:`observe_request` of every request handed over, in order, written out in one loop."""
        pending = self._pending
        if not pending:
            return
        ttft, e2e, queue, itl = self._ttft, self._e2e, self._queue, self._itl
        t_bounds, t_counts, t_total = ttft.bounds, ttft.counts, ttft.total
        e_bounds, e_counts, e_total = e2e.bounds, e2e.counts, e2e.total
        q_bounds, q_counts, q_total = queue.bounds, queue.counts, queue.total
        i_bounds, i_counts, i_total, i_count = itl.bounds, itl.counts, itl.total, itl.count
        for _, arrival, admitted, first, finish, _, output in pending:  # FinishedRequest's fields
            value = first - arrival
            t_counts[bisect_left(t_bounds, value)] += 1.0
            t_total += value
            value = finish - arrival
            e_counts[bisect_left(e_bounds, value)] += 1.0
            e_total += value
            value = admitted - arrival
            q_counts[bisect_left(q_bounds, value)] += 1.0
            q_total += value
            if output > 1:
                gaps = output - 1
                value = (finish - first) / gaps
                i_counts[bisect_left(i_bounds, value)] += gaps
                i_total += value * gaps
                i_count += gaps
        n = len(pending)
        self._request_success += n
        ttft.total, ttft.count = t_total, ttft.count + n
        e2e.total, e2e.count = e_total, e2e.count + n
        queue.total, queue.count = q_total, queue.count + n
        itl.total, itl.count = i_total, i_count
        pending.clear()

    def counters(self) -> dict[str, float]:
        """The counter values under their Prometheus names."""
        return {
            sig.PROMPT_TOKENS: self.prompt_tokens,
            sig.GENERATION_TOKENS: self.generation_tokens,
            sig.REQUEST_SUCCESS: self.request_success,
        }


def _restore_sink(prompt_tokens: float, generation_tokens: float, busy_seconds: float, request_success: float,
                  histograms: dict[str, Histogram], pending: list[tuple]) -> MetricSink:
    sink = MetricSink()
    sink.prompt_tokens, sink.generation_tokens, sink.busy_seconds, sink._request_success = prompt_tokens, generation_tokens, busy_seconds, request_success
    sink._histograms, sink._pending = histograms, pending
    h = histograms
    sink._ttft, sink._e2e, sink._queue, sink._itl = h[sig.TTFT_HIST], h[sig.E2E_HIST], h[sig.QUEUE_HIST], h[sig.ITL_HIST]
    return sink
