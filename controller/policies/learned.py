"""A learned policy: a trained network run from its artifact (onnxruntime, no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.artifact import PolicyArtifact
from controller.decision import Proposal
from controller.observation import ObservationContext, build_observation
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class LearnedPolicy:
    """Builds the observation with the artifact's normalisation, takes the argmax step."""

    artifact: PolicyArtifact
    name: str = "learned"

    def initial_state(self) -> None:
        return None

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: None) -> tuple[Proposal, None]:
        obs = build_observation(snapshot, ObservationContext(slo=ctx.slo, max_replicas=self.artifact.max_replicas))
        action = int(self.artifact.actions(obs)[0])
        step = self.artifact.steps[action]
        return Proposal(ctx.current_replicas + step, (f"action {action}: step {step:+d}",)), None
