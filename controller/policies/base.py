"""The policy protocol shared by every scaling policy.

A policy is pure: ``decide(snapshot, ctx, state)`` returns a proposal and the
new state; it never reads the clock (``ctx.now_s``) or does I/O.

Optional attributes that :func:`controller.autoscaling.decide` reads:

- ``required_signals``: snapshot signals without which the decision is stale;
- ``stabilizes_scale_down``: ``True`` when the policy has a scale-down window of
  its own, so the guardrails add none unless the user sets one;
- ``reads_capacity``: ``True`` when it reads ``PolicyContext.capacity`` (the
  simulator then computes the cluster's capacity profile for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from controller.capacity import CapacityProfile
from controller.decision import Proposal
from controller.slo import SLO

#: Seconds from asking for a replica until it serves, when the target does not say (a cached
#: image and a model load: the reported mean pod start of a large model on H100 is about 85 s).
DEFAULT_COLD_START_S = 90.0


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy may know besides the metrics snapshot.

    :param capacity: the target's per-replica capacity at the SLO (``None`` when not given).
    :param cold_start_s: how long a new replica takes to become Ready, seconds.
    """

    now_s: float
    current_replicas: int
    min_replicas: int
    max_replicas: int
    slo: SLO = SLO()
    interval_s: float = 15.0
    capacity: CapacityProfile | None = None
    cold_start_s: float = DEFAULT_COLD_START_S


@runtime_checkable
class Policy(Protocol):
    """A scaling policy: a name, an initial state and a pure decision."""

    name: str

    def initial_state(self) -> Any: ...

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: Any) -> tuple[Proposal, Any]: ...
