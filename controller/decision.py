"""Decision records: every scaling decision can answer "why"."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Proposal:
    """What a policy wants. ``replicas`` is ``None`` when it has no valid answer
    (for example no data yet); that is a result, not an error."""

    replicas: int | None
    reasons: tuple[str, ...] = ()
    #: why the policy's own answer was replaced by its fallback (``out_of_range``, ``actor_error``), else ``None``
    fallback: str | None = None

    @property
    def valid(self) -> bool:
        return self.replicas is not None


@dataclass(frozen=True)
class GuardStep:
    """One guard that changed the proposal: from ``before`` to ``after``, and why."""

    guard: str
    before: int
    after: int
    reason: str


@dataclass(frozen=True)
class DecisionRecord:
    """Inputs, raw proposal, each guard that changed it, final value and reason."""

    time_s: float
    policy: str
    current_replicas: int
    proposal: int | None
    final: int
    reason: str
    steps: tuple[GuardStep, ...] = ()
    policy_reasons: tuple[str, ...] = ()
    inputs: dict[str, float] = field(default_factory=dict)
    baseline: int | None = None
    stale: bool = False
    fallback: str | None = None

    @property
    def changed(self) -> bool:
        return self.final != self.current_replicas

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
