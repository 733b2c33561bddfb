"""The policy protocol shared by every scaling policy.

A policy is pure: ``decide(snapshot, ctx, state)`` returns a proposal and the
new state; it never reads the clock (``ctx.now_s``) or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from controller.decision import Proposal
from controller.slo import SLO


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy may know besides the metrics snapshot."""

    now_s: float
    current_replicas: int
    min_replicas: int
    max_replicas: int
    slo: SLO = SLO()
    interval_s: float = 15.0


@runtime_checkable
class Policy(Protocol):
    """A scaling policy: a name, an initial state and a pure decision."""

    name: str

    def initial_state(self) -> Any: ...

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: Any) -> tuple[Proposal, Any]: ...
