"""What a pipeline controller sees at one moment: per-stage and end-to-end metrics (plain data)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class StageSnapshot:
    """One stage over the last window.

    :param queue: requests waiting at the stage now (not being served).
    :param queue_growth: change of ``queue`` per second over the window.
    :param arrival_rate: requests per second that reached the stage.
    :param throughput: requests per second that left it.
    :param capacity_rps: what one replica serves, requests per second.
    :param utilisation: ``arrival_rate / (ready x capacity_rps)``; with no replica ready, 2 under load, else 0.
    :param latency_s: mean time a request spent in the stage (NaN when none left it).
    :param service_s: time a lone request spends in one replica (no queue, no batching).
    :param concurrency_stable: requests in the stage (queued and in service), averaged over the last 60 s.
    :param concurrency_panic: the same over the last 6 s (Knative's panic window).
    :param concurrency_capacity: requests inside one replica when it serves ``capacity_rps``.
    """

    name: str
    kind: str
    ready: int
    starting: int
    draining: int
    min_replicas: int
    max_replicas: int
    queue: int
    queue_growth: float
    in_service: int
    arrival_rate: float
    throughput: float
    capacity_rps: float
    utilisation: float
    latency_s: float
    price_per_hour: float
    service_s: float = math.nan
    concurrency_stable: float = math.nan
    concurrency_panic: float = math.nan
    concurrency_capacity: float = math.nan

    @property
    def desired(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True)
class PipelineSnapshot:
    """The pipeline at ``time_s``: its stages in order and the end-to-end view over the window."""

    time_s: float
    stages: tuple[StageSnapshot, ...]
    arrival_rate: float
    p99_s: float
    mean_s: float
    completed: int
    in_flight: int
    cost_usd: float
    slo_p99_s: float

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> StageSnapshot:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def replicas(self) -> dict[str, int]:
        return {s.name: s.desired for s in self.stages}

    @property
    def cost_rate_per_hour(self) -> float:
        """USD per hour of the replicas asked for now."""
        return sum((s.desired + s.draining) * s.price_per_hour for s in self.stages)


def nan_to(value: float, default: float) -> float:
    return default if value is None or not math.isfinite(value) else value
