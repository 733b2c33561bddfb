"""A learned policy: a trained network acting around the planner, with a safe fallback.

Each decision:

1. the planner (:class:`~controller.policies.planner.PlannerPolicy`, the one the
   policy was trained with) assesses the snapshot: demand, forecast, capacity
   and its own proposal;
2. :func:`controller.observation.build_observation` turns the snapshot, the
   target's context and the planner's view into the observation, the same
   function the simulator trained on;
3. **out of range**: when a feature leaves the range seen in training (by more
   than the artifact's margin), the planner's proposal is taken instead and the
   proposal says so (``fallback="out_of_range"``; the controller counts it);
4. otherwise the actor (the artifact's network on onnxruntime, or the agent in
   training) picks an action, mapped by :class:`~controller.artifact.ActionMap`:
   ``residual`` (planner's proposal + step), ``step`` (current + step) or
   ``target``; a scale-down while requests wait and the p95 TTFT is over the
   SLO is held at the current replicas, as the planner does.

The guardrails bound the result. Training and serving construct this same
class; only the actor differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from controller.artifact import ActionMap, ArtifactError, FeatureRange, PolicyArtifact
from controller.decision import Proposal
from controller.observation import ObservationInputs, build_observation
from controller.policies.base import PolicyContext
from controller.policies.planner import PlannerPolicy, PlannerState, overloaded


class Actor(Protocol):
    """What picks an action index for each observation row (a network, or an agent in training)."""

    def actions(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class LearnedState:
    """:param planner: the planner's state. :param decisions: decisions taken so far (it names each stochastic draw)."""

    planner: PlannerState = PlannerState()
    decisions: int = 0


@dataclass
class PendingAction:
    """An :class:`Actor` that returns the action an outside agent chose (training: the env sets it before each step)."""

    action: int = 0

    def actions(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.full(len(np.atleast_2d(obs)), self.action, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class LearnedPolicy:
    """A network acting around the planner.

    :param actor: picks action indices from observations (:class:`~controller.artifact.PolicyArtifact` or :class:`PendingAction`).
    :param action_map: what each action index means.
    :param planner: the planner the policy was trained with (residual base, features, fallback).
    :param feature_range: training bounds of the features; ``None`` disables the out-of-range fallback.
    :param deterministic: take the highest-scoring action (default); otherwise sample with
        ``numpy.random.default_rng((seed, decision number))``.
    :param seed: seed of the stochastic draws.
    """

    actor: Actor
    action_map: ActionMap
    planner: PlannerPolicy = field(default_factory=PlannerPolicy)
    feature_range: FeatureRange | None = None
    deterministic: bool = True
    seed: int = 0
    name: str = "learned"

    required_signals: ClassVar[tuple[str, ...]] = PlannerPolicy.required_signals
    #: Built on the planner's consolidation check and trained under the guardrails it is served with.
    stabilizes_scale_down: ClassVar[bool] = True
    #: Reads the target's capacity profile (``PolicyContext.capacity``).
    reads_capacity: ClassVar[bool] = True

    @classmethod
    def from_artifact(cls, artifact: PolicyArtifact, deterministic: bool = True, seed: int = 0) -> LearnedPolicy:
        """The policy an artifact describes: its network, action map, planner and feature range."""
        if not deterministic and artifact.output != "scores":
            raise ArtifactError(f"policy artifact {artifact.path}: stochastic actions need a model that outputs scores")
        return cls(artifact, artifact.action_map, PlannerPolicy(**artifact.planner), artifact.feature_range, deterministic, seed)

    def initial_state(self) -> LearnedState:
        return LearnedState(self.planner.initial_state())

    def observe(self, snapshot: Mapping[str, float], ctx: PolicyContext,
                state: LearnedState) -> tuple[np.ndarray, Proposal, PlannerState]:
        """The observation of ``snapshot``, the planner's proposal and the planner's next state (pure)."""
        assessment, planned, planner_state = self.planner.plan(snapshot, ctx, state.planner)
        inputs = ObservationInputs(snapshot, ctx.slo, ctx.cold_start_s, ctx.current_replicas, assessment.needed_now,
                                   assessment.needed_ahead, assessment.replica_rps, planned.replicas)
        return build_observation(inputs), planned, planner_state

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: LearnedState) -> tuple[Proposal, LearnedState]:
        if ctx.capacity is None:
            return Proposal(None, ("no capacity profile: give spec.capacity (kis capacity) or an artifact with one",)), state
        obs, planned, planner_state = self.observe(snapshot, ctx, state)
        nxt = LearnedState(planner_state, state.decisions + 1)
        if self.feature_range is not None:
            outside = self.feature_range.outside(obs)
            if outside:
                reason = f"OutOfRange: {', '.join(outside)} outside the training range; the planner decides"
                return Proposal(planned.replicas, (reason, *planned.reasons), fallback="out_of_range"), nxt
        rng = None if self.deterministic else np.random.default_rng((self.seed, state.decisions))
        try:
            index = int(self.actor.actions(obs[None, :], rng)[0])
        except ArtifactError as exc:
            return Proposal(planned.replicas, (f"ActorFailed: {exc}; the planner decides", *planned.reasons), fallback="actor_error"), nxt
        replicas = self.action_map.replicas(index, ctx.current_replicas, planned.replicas)
        reason = f"action {index}: {self.action_map.describe(index)}" + (f" (planner {planned.replicas})" if planned.valid else " (planner has none)")
        if replicas is not None and replicas < ctx.current_replicas and overloaded(snapshot, ctx):
            return Proposal(ctx.current_replicas, (reason, "requests wait and TTFT is over the SLO: no scale-down")), nxt
        return Proposal(replicas, (reason,)), nxt
