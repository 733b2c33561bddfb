"""One decision path per stage: every stage of a pipeline is one scale target of the real controller.

The controller decides a Deployment with :func:`controller.autoscaling.decide` on an
:class:`~controller.autoscaling.Autoscaler` (policy, guardrails, SLO, interval). A
pipeline is several Deployments, so here each stage has its own ``Autoscaler`` (the
policy, and a :class:`~controller.guardrails.Behavior` with the stage's
``[min_replicas, max_replicas]``) and its own ``AutoscalerState``, and every stage
decision is one ``decide`` call on that stage's metrics snapshot, in the signal names of
:mod:`controller.signals` (:func:`stage_signals`). The shared GPU budget is applied
afterwards, across the stages: :func:`controller.pipeline.decide_pipeline`, the very
step the controller takes for an InferencePipelineAutoscaler.

- :class:`PerStage`: per-stage rules, what users run today: one HPA per stage
  (:func:`stage_hpa`, :class:`controller.policies.hpa.HpaPolicy` on the stage's
  utilisation) or one Knative KPA per stage (:func:`stage_kpa`,
  :class:`controller.policies.kpa.KpaPolicy` on the stage's concurrency).
- :class:`Guarded`: controllers that propose joint replica counts (the planner, the
  in-context controller, PPO) pass each stage's proposal through that stage's
  guardrails (:func:`controller.guardrails.apply_guardrails`, the pure step ``decide``
  uses) and then the budget (:func:`controller.pipeline.within_budget`); no second
  copy of the bounding logic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import signals as sig
from controller.autoscaling import Autoscaler, AutoscalerState
from controller.decision import Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails, first_state
from controller.pipeline import PipelineStage, decide_pipeline
from controller.policies.base import Policy
from controller.policies.hpa import HpaPolicy
from controller.policies.kpa import KpaPolicy
from simulator.pipeline.controllers import PipelineController, PipelineDecision, bound, load_pressure
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot


def stage_signals(snapshot: PipelineSnapshot, name: str) -> dict[str, float]:
    """One stage as the controller reads a Deployment's metrics snapshot (:mod:`controller.signals` names)."""
    s = snapshot.stage(name)
    return {
        "gpu_utilization": 100.0 * s.utilisation if s.ready else math.nan,
        "requests_running": float(s.in_service),
        "requests_waiting": float(s.queue),
        "request_rate": s.throughput,
        sig.CONCURRENCY_STABLE: s.concurrency_stable,
        sig.CONCURRENCY_PANIC: s.concurrency_panic,
        sig.REPLICAS_REPORTING: float(s.ready),
        sig.REPLICAS_READY: float(s.ready),
        sig.REPLICAS_PENDING: float(s.starting),
        sig.REPLICAS_DESIRED: float(s.desired),
    }


def stage_behavior(stage: StageSnapshot, overrides: Mapping[str, Any] | None = None) -> Behavior:
    """The stage's guardrails: its replica bounds plus ``overrides`` (other :class:`Behavior` fields)."""
    return Behavior(stage.min_replicas, stage.max_replicas, **dict(overrides or {}))


@dataclass(frozen=True)
class HpaFor:
    """An HPA on the stage's utilisation (``gpu_utilization``, percent) at ``target`` (a fraction)."""

    target: float = 0.7

    def __call__(self, stage: StageSnapshot) -> Policy:
        return HpaPolicy(metric="gpu_utilization", target=100.0 * self.target)


@dataclass(frozen=True)
class KpaFor:
    """A KPA whose concurrency target is ``utilisation`` x the requests one replica holds at capacity
    (Knative's target-utilisation percentage, 70% by default, of the container concurrency)."""

    utilisation: float = 0.7

    def __call__(self, stage: StageSnapshot) -> Policy:
        per_replica = stage.concurrency_capacity if math.isfinite(stage.concurrency_capacity) else 1.0
        return KpaPolicy(target=max(1e-6, self.utilisation * per_replica))


@dataclass(frozen=True)
class PerStage:
    """One :class:`Autoscaler` per stage (``policy_for(stage)``), each stepped through ``decide``, then the budget.

    :param behavior: :class:`Behavior` fields besides the bounds, for every stage.
    """

    name: str
    policy_for: Any
    interval_s: float = 15.0
    budget: int | None = None
    behavior: Mapping[str, Any] = field(default_factory=dict)

    def autoscaler(self, stage: StageSnapshot) -> Autoscaler:
        return Autoscaler(self.policy_for(stage), stage_behavior(stage, self.behavior), interval_s=self.interval_s)

    def initial_state(self) -> dict[str, AutoscalerState]:
        return {}

    def decide(self, snapshot: PipelineSnapshot, state: dict[str, AutoscalerState]) -> tuple[PipelineDecision, dict[str, AutoscalerState]]:
        stages = [PipelineStage(s.name, self.autoscaler(s)) for s in snapshot.stages]
        signals = {s.name: stage_signals(snapshot, s.name) for s in snapshot.stages}
        records, new_state = decide_pipeline(stages, signals, snapshot.time_s, snapshot.replicas, state, self.budget, load_pressure(snapshot))
        new_state = {**state, **new_state}
        reasons = tuple(f"{name}: {r.reason}" for name, r in records.items())
        summary = {name: {"proposal": r.proposal, "final": r.final, "reason": r.reason, "stale": r.stale} for name, r in records.items()}
        return PipelineDecision({name: r.final for name, r in records.items()}, reasons, {"stages": summary}), new_state


def stage_hpa(target: float = 0.7, interval_s: float = 15.0, budget: int | None = None) -> PerStage:
    """One Kubernetes HPA per stage on its utilisation, the HPA's own 5 min scale-down window."""
    return PerStage("hpa", HpaFor(target), interval_s, budget)


def stage_kpa(utilisation: float = 0.7, interval_s: float = 15.0, budget: int | None = None) -> PerStage:
    """One Knative KPA per stage on its concurrency (stable 60 s and panic 6 s windows)."""
    return PerStage("kpa", KpaFor(utilisation), interval_s, budget)


@dataclass(frozen=True)
class Guarded:
    """``inner``'s joint proposal, each stage's through that stage's guardrails, then the budget.

    The pipeline snapshot is complete by construction, so no decision is stale here. A joint
    controller has its own scale-down delay, so the default adds no stabilisation window.
    """

    inner: PipelineController
    budget: int | None = None
    behavior: Mapping[str, Any] = field(default_factory=lambda: {"scale_down_stabilization_s": 0.0})

    @property
    def name(self) -> str:
        return self.inner.name

    def initial_state(self) -> tuple[Any, dict[str, GuardState]]:
        return self.inner.initial_state(), {}

    def decide(self, snapshot: PipelineSnapshot, state: tuple[Any, dict[str, GuardState]]) -> tuple[PipelineDecision, tuple[Any, dict[str, GuardState]]]:
        inner_state, guards = state
        decision, inner_state = self.inner.decide(snapshot, inner_state)
        now, replicas, steps, new_guards = snapshot.time_s, {}, {}, dict(guards)
        for s in snapshot.stages:
            guard = guards.get(s.name) or first_state(now, s.desired)
            result = apply_guardrails(Proposal(decision.replicas.get(s.name, s.desired)), s.desired, now,
                                      stage_behavior(s, self.behavior), guard, stale=False)
            replicas[s.name], new_guards[s.name] = result.final, result.state
            if result.steps:
                steps[s.name] = result.reason
        record = {**decision.record, **({"guardrails": steps} if steps else {})}
        return PipelineDecision(bound(replicas, snapshot, self.budget), decision.reasons, record), (inner_state, new_guards)
