"""A constant replica count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from controller.decision import Proposal
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class FixedPolicy:
    """Always proposes ``replicas`` (the guardrails still bound it)."""

    replicas: int
    name: str = "fixed"

    required_signals: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")

    def initial_state(self) -> None:
        return None

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: None) -> tuple[Proposal, None]:
        return Proposal(self.replicas, (f"fixed at {self.replicas}",)), None
