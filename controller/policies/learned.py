"""A learned policy: a trained network run from its artifact (onnxruntime, no torch).

The observation is built by :func:`controller.observation.build_observation`,
the same function the simulator trained on, with the artifact's
``observation_context.max_replicas`` (the normalisation used in training;
the controller's ``max_replicas`` when the artifact has none). Step actions
map to ``current + step``, target actions to the target itself; the
guardrails bound the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from controller.artifact import ArtifactError, PolicyArtifact
from controller.decision import Proposal
from controller.observation import ObservationContext, build_observation
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class LearnedState:
    """Decisions taken so far: with a seed, it names each stochastic draw, so replays match."""

    decisions: int = 0


@dataclass(frozen=True, eq=False)
class LearnedPolicy:
    """The artifact's network as a :class:`~controller.policies.base.Policy`.

    :param artifact: a loaded :class:`~controller.artifact.PolicyArtifact`.
    :param deterministic: take the highest-scoring action (default); otherwise sample from the
        softmax of the scores with ``numpy.random.default_rng((seed, decision number))``.
    :param seed: seed of the stochastic draws.
    """

    artifact: PolicyArtifact
    deterministic: bool = True
    seed: int = 0
    name: str = "learned"

    required_signals: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not self.deterministic and self.artifact.output != "scores":
            raise ArtifactError(f"policy artifact {self.artifact.path}: stochastic actions need a model that outputs scores")

    def initial_state(self) -> LearnedState:
        return LearnedState()

    def observation(self, snapshot: Mapping[str, float], ctx: PolicyContext) -> np.ndarray:
        """The observation vector the network sees for ``snapshot``."""
        max_replicas = self.artifact.max_replicas or max(ctx.max_replicas, 1)
        return build_observation(snapshot, ObservationContext(slo=ctx.slo, max_replicas=max_replicas))

    def predict(self, obs_batch: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Action indices for a batch of observations ``[N, OBSERVATION_SIZE]`` (argmax unless ``rng``)."""
        return self.artifact.actions(obs_batch, None if self.deterministic else rng)

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: LearnedState | None) -> tuple[Proposal, LearnedState]:
        count = state.decisions if isinstance(state, LearnedState) else 0
        rng = None if self.deterministic else np.random.default_rng((self.seed, count))
        try:
            action = int(self.predict(self.observation(snapshot, ctx)[None, :], rng)[0])
        except ArtifactError as exc:
            return Proposal(None, (str(exc),)), LearnedState(count + 1)
        value = self.artifact.action_values[action]
        if self.artifact.action_kind == "step":
            return Proposal(ctx.current_replicas + value, (f"action {action}: step {value:+d}",)), LearnedState(count + 1)
        return Proposal(value, (f"action {action}: target {value}",)), LearnedState(count + 1)
