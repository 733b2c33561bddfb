"""GPU utilisation as dcgm-exporter reports it: ``DCGM_FI_DEV_GPU_UTIL``.

DCGM's field 203 is NVML's ``utilization.gpu``: the percent of time over the
past sample period during which one or more kernels was executing on the GPU
(the period is between 1/6 s and 1 s depending on the product; 1 s here).
dcgm-exporter reads the field every collection interval, so a Prometheus
sample is the busy share of the second before it, not an average since the
previous scrape.

A simulated replica runs kernels from the start of an iteration to its end
and iterations back to back while it holds work, so its kernel activity is a
sequence of busy spans: one opens when a request reaches an idle engine and
closes when the engine's last request finishes. :class:`KernelActivity`
keeps the recent spans of one engine; the stub's ``/metrics`` and the
simulator's snapshot both read it, so both define utilisation the same way.
"""

from __future__ import annotations

from collections import deque

from simulator.engine.replica import ReplicaEngine

#: NVML's utilisation sample period (seconds).
DCGM_SAMPLE_PERIOD_S = 1.0


class KernelActivity:
    """Busy spans of one engine. Call :meth:`before_submit` after ``engine.advance(t)`` and before ``engine.submit`` at ``t``.

    :param keep: closed spans kept (older ones are forgotten; a window shorter than ``keep``
        idle gaps is exact).
    """

    __slots__ = ("_closed", "_open")

    def __init__(self, keep: int = 32) -> None:
        self._closed: deque[tuple[float, float]] = deque(maxlen=keep)
        self._open: float | None = None

    def before_submit(self, engine: ReplicaEngine, t: float) -> None:
        """A request is about to reach ``engine`` at ``t``: an idle engine starts a busy span."""
        if engine.is_idle:
            if self._open is not None:
                self._closed.append((self._open, engine.last_finish_s))
            self._open = max(engine.clock, t)

    def busy_seconds(self, engine: ReplicaEngine, start: float, end: float) -> float:
        """Seconds of ``(start, end]`` during which the engine ran iterations."""
        busy = 0.0
        closed = self._closed
        first = len(closed)
        while first and closed[first - 1][1] > start:  # the spans are in time order; earlier ones add exactly 0.0
            first -= 1
        for i in range(first, len(closed)):
            s, e = closed[i]
            busy += max(0.0, min(e, end) - max(s, start))
        if self._open is not None:
            e = engine.last_finish_s if engine.is_idle else end
            busy += max(0.0, min(e, end) - max(self._open, start))
        return busy

    def utilization(self, engine: ReplicaEngine, now: float, period_s: float = DCGM_SAMPLE_PERIOD_S) -> float:
        """``DCGM_FI_DEV_GPU_UTIL`` at ``now``: percent of the last ``period_s`` with a kernel running (0..100)."""
        return 100.0 * min(1.0, self.busy_seconds(engine, now - period_s, now) / period_s)
