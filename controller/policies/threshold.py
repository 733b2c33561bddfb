"""The classic baseline: step up or down on tokens per minute per ready replica."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from controller import load
from controller.decision import Proposal
from controller.policies.base import PolicyContext


def tokens_per_minute_per_replica(snapshot: Mapping[str, float]) -> float:
    """60 x (prompt + generated tokens/s) per pod with a sample; NaN when any input is missing."""
    return 60.0 * load.per_replica(snapshot, ("prompt_token_rate", "generation_token_rate"))


@dataclass(frozen=True)
class ThresholdPolicy:
    """Above ``scale_up_tpm`` add ``step_up`` replicas; below ``scale_down_tpm`` remove ``step_down``;
    the result stays within ``[min_replicas, max_replicas]``.

    :param scale_up_tpm: tokens per minute per ready replica above which to add replicas.
    :param scale_down_tpm: tokens per minute per ready replica below which to remove replicas.
    :param step_up: replicas added per decision.
    :param step_down: replicas removed per decision.
    """

    scale_up_tpm: float
    scale_down_tpm: float
    step_up: int = 1
    step_down: int = 1
    name: str = "threshold"

    required_signals: ClassVar[tuple[str, ...]] = ("prompt_token_rate", "generation_token_rate")

    def __post_init__(self) -> None:
        if not 0 <= self.scale_down_tpm < self.scale_up_tpm:
            raise ValueError(f"need 0 <= scale_down_tpm < scale_up_tpm, got {self.scale_down_tpm}, {self.scale_up_tpm}")
        if self.step_up < 1 or self.step_down < 1:
            raise ValueError("steps must be >= 1")

    def initial_state(self) -> None:
        return None

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: None) -> tuple[Proposal, None]:
        tpm = tokens_per_minute_per_replica(snapshot)
        current = ctx.current_replicas
        if math.isnan(tpm):
            return Proposal(None, ("token rates unavailable",)), None
        if tpm > self.scale_up_tpm:
            return Proposal(min(current + self.step_up, ctx.max_replicas), (f"{tpm:.0f} tokens/min/replica > {self.scale_up_tpm:g}",)), None
        if tpm < self.scale_down_tpm:
            return Proposal(max(current - self.step_down, ctx.min_replicas), (f"{tpm:.0f} tokens/min/replica < {self.scale_down_tpm:g}",)), None
        return Proposal(current, (f"{tpm:.0f} tokens/min/replica within thresholds",)), None
