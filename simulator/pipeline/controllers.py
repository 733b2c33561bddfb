"""Pipeline controllers: pure decisions from a :class:`PipelineSnapshot` to replicas per stage.

A controller has a ``name``, ``initial_state()`` and ``decide(snapshot, state) ->
(PipelineDecision, state)``; it does no I/O. :func:`bound` applies each
stage's replica bounds and the shared GPU budget, through the controller's
own budget step (:func:`controller.pipeline.within_budget`). The per-stage HPA and KPA,
and the per-stage guardrails of joint controllers, are in
:mod:`simulator.pipeline.stagewise`.

- :class:`PipelinePlanner`: the planner extended to a chain. The chain's
  throughput is its slowest stage's; every request crosses every stage, so
  each stage is sized to the forecast arrival rate (Holt's trend one cold
  start ahead) plus its backlog drained within ``drain_s``, over its
  per-replica capacity at ``target_utilization``. Scale-down waits until a
  smaller fleet has fit for ``scale_down_delay_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.forecast import Holt, HoltState
from controller.pipeline import Pressure, StageLimits, within_budget
from simulator.pipeline.snapshot import PipelineSnapshot


@dataclass(frozen=True)
class PipelineDecision:
    """Replicas per stage, why, and the decision record's extra fields (selector, fallback, tokens...)."""

    replicas: dict[str, int]
    reasons: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)


class PipelineController(Protocol):
    name: str

    def initial_state(self) -> Any: ...

    def decide(self, snapshot: PipelineSnapshot, state: Any) -> tuple[PipelineDecision, Any]: ...


def stage_limits(snapshot: PipelineSnapshot) -> list[StageLimits]:
    """Each stage's replica bounds (one GPU per replica), as :func:`controller.pipeline.within_budget` reads them."""
    return [StageLimits(s.name, s.min_replicas, s.max_replicas) for s in snapshot.stages]


def load_pressure(snapshot: PipelineSnapshot) -> Pressure:
    """A stage's arrival rate over what ``n`` of its replicas serve: the stage furthest below full utilisation gives up first."""
    stages = {s.name: s for s in snapshot.stages}
    return lambda name, n: stages[name].arrival_rate / (n * stages[name].capacity_rps)


def bound(replicas: Mapping[str, int], snapshot: PipelineSnapshot, budget: int | None = None) -> dict[str, int]:
    """``replicas`` (a stage left out: its current count) within each stage's ``[min, max]`` and, with a ``budget``,
    at most that many in total (:func:`controller.pipeline.within_budget`, the controller's own budget step,
    with :func:`load_pressure`)."""
    wanted = {s.name: int(replicas.get(s.name, s.desired)) for s in snapshot.stages}
    return within_budget(wanted, stage_limits(snapshot), budget, load_pressure(snapshot))


@dataclass(frozen=True)
class PlannerState:
    demand: HoltState = HoltState()
    fits_since_s: tuple[tuple[str, float], ...] = ()


def chain_throughput(snapshot: PipelineSnapshot) -> tuple[float, str]:
    """Requests per second the ready fleet serves end to end, and the stage that limits it."""
    slowest = min(snapshot.stages, key=lambda s: s.ready * s.capacity_rps)
    return slowest.ready * slowest.capacity_rps, slowest.name


@dataclass(frozen=True)
class PipelinePlanner:
    """Replicas per stage from the forecast arrival rate and per-stage capacity (module docstring).

    :param capacity: requests/s per replica to plan with, per stage; default: what the snapshot reports.
    :param cold_start_s: the forecast's horizon less one interval.
    """

    target_utilization: float = 0.8
    interval_s: float = 15.0
    cold_start_s: float = 90.0
    drain_s: float = 60.0
    scale_down_delay_s: float = 120.0
    capacity: Mapping[str, float] | None = None
    budget: int | None = None
    name: str = "planner"

    def initial_state(self) -> PlannerState:
        return PlannerState()

    def needed(self, snapshot: PipelineSnapshot, demand_rps: float) -> dict[str, int]:
        """Replicas each stage needs for ``demand_rps`` plus its backlog."""
        out = {}
        for s in snapshot.stages:
            cap = (self.capacity or {}).get(s.name, s.capacity_rps) * self.target_utilization
            rate = demand_rps + s.queue / self.drain_s
            out[s.name] = max(s.min_replicas, math.ceil(rate / cap - 1e-9)) if rate > 0 else s.min_replicas
        return out

    def decide(self, snapshot: PipelineSnapshot, state: PlannerState) -> tuple[PipelineDecision, PlannerState]:
        return self.decide_from(snapshot, state, snapshot.replicas)

    def decide_from(self, snapshot: PipelineSnapshot, state: PlannerState,
                    current: Mapping[str, int]) -> tuple[PipelineDecision, PlannerState]:
        """:meth:`decide` as if the stages had ``current`` replicas (what a controller adding a residual to
        the planner's proposal counts as the planner's own)."""
        now = snapshot.time_s
        demand = Holt().update(state.demand, snapshot.arrival_rate, now)
        ahead = demand.forecast(self.cold_start_s + self.interval_s)
        need = self.needed(snapshot, max(snapshot.arrival_rate, ahead if math.isfinite(ahead) else 0.0))
        fits = dict(state.fits_since_s)
        replicas, reasons = {}, []
        for s in snapshot.stages:
            want, held = need[s.name], current[s.name]
            if want >= held:
                fits.pop(s.name, None)
                replicas[s.name] = want
            else:
                since = fits.setdefault(s.name, now)
                replicas[s.name] = want if now - since >= self.scale_down_delay_s else held
                if replicas[s.name] == want:
                    fits.pop(s.name, None)
            reasons.append(f"{s.name}: need {want} (now {held})")
        served, slowest = chain_throughput(snapshot)
        reasons.append(f"demand {snapshot.arrival_rate:.2f}/s, forecast {ahead:.2f}/s; chain serves {served:.2f}/s (slowest: {slowest})")
        return (PipelineDecision(bound(replicas, snapshot, self.budget), tuple(reasons)),
                PlannerState(demand, tuple(sorted(fits.items()))))
