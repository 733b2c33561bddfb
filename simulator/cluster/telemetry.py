"""Turn cumulative simulated metrics into a snapshot, the way PromQL would.

Rates are counter increases over the window divided by the window;
quantiles are :func:`controller.signals.histogram_quantile` over the bucket
increases in the window (``histogram_quantile(q, sum by (le) (rate(..)))``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque

from controller import signals as sig
from simulator.copying import attributes, restore
from simulator.engine.metrics import MetricSink

_RATES = (
    ("request_rate", sig.REQUEST_SUCCESS, False),
    ("request_rate_long", sig.REQUEST_SUCCESS, True),
    ("prompt_token_rate", sig.PROMPT_TOKENS, False),
    ("generation_token_rate", sig.GENERATION_TOKENS, False),
)
_QUANTILES = (
    ("ttft_p95", sig.TTFT_HIST),
    ("tpot_p95", sig.ITL_HIST),
    ("e2e_p95", sig.E2E_HIST),
    ("queue_time_p95", sig.QUEUE_HIST),
)


class _Sample:
    __slots__ = ("t", "counters", "buckets")

    def __init__(self, t: float, counters: dict[str, float], buckets: dict[str, tuple[float, ...]]) -> None:
        self.t = t
        self.counters = counters
        self.buckets = buckets

    def __reduce__(self) -> tuple:  # copy and pickle, also when compiled
        return _Sample, (self.t, self.counters, self.buckets)


class MetricsRecorder:
    """Keeps the samples a window needs and answers rates and quantiles."""

    def __init__(self, window_s: float, long_window_s: float) -> None:
        self.window_s = window_s
        self.long_window_s = long_window_s
        self._samples: deque[_Sample] = deque()
        self._times: deque[float] = deque()

    def __reduce__(self) -> tuple:  # copy and pickle, also when compiled (simulator.copying)
        return MetricsRecorder, (self.window_s, self.long_window_s), attributes(self)

    def __setstate__(self, state: dict) -> None:
        restore(self, state)

    def record(self, t: float, sink: MetricSink) -> None:
        buckets = {name: h.snapshot() for name, h in sink.histograms.items()}
        if self._times and self._times[-1] >= t:  # a second sample at the same instant replaces the first
            self._samples.pop()
            self._times.pop()
        self._samples.append(_Sample(t, sink.counters(), buckets))
        self._times.append(t)
        horizon = t - self.long_window_s
        while len(self._times) > 1 and self._times[1] <= horizon:
            self._samples.popleft()
            self._times.popleft()

    def _base(self, window_s: float) -> _Sample | None:
        """The sample at the start of the window (the oldest one inside it if none is exactly there)."""
        if len(self._samples) < 2:
            return None
        start = self._times[-1] - window_s
        i = bisect_left(self._times, start - 1e-9)
        if i >= len(self._samples) - 1:
            return None
        return self._samples[i]

    def signals(self) -> dict[str, float]:
        """Rate and quantile signals at the latest sample (NaN without enough history)."""
        out: dict[str, float] = {}
        if not self._samples:
            return {name: math.nan for name, _, _ in _RATES} | {name: math.nan for name, _ in _QUANTILES}
        last = self._samples[-1]
        base = self._base(self.window_s)
        base_long = self._base(self.long_window_s)
        for name, counter, long in _RATES:
            b = base_long if long else base
            out[name] = math.nan if b is None else (last.counters[counter] - b.counters[counter]) / (last.t - b.t)
        for name, hist in _QUANTILES:
            if base is None:
                out[name] = math.nan
                continue
            deltas = [x - y for x, y in zip(last.buckets[hist], base.buckets[hist])]
            out[name] = sig.histogram_quantile(0.95, sig.HISTOGRAM_BUCKETS[hist], deltas)
        return out
