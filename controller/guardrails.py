"""Guardrails: the ordered pipeline every policy's proposal goes through.

Order, and why:

1. **stale-metrics rule** decides what the proposal is when the metrics are
   missing: ``hold`` keeps the current replicas, ``scale_up_only`` accepts only
   increases, ``baseline`` uses the baseline policy's proposal (floored at the
   current replicas). Under no rule is a scale-down taken on stale data.
   A policy without a valid answer (no data yet) also holds.
2. **bounds** ``[min_replicas, max_replicas]``.
3. **max step** per control interval, up and down.
4. **scale-down stabilisation**: a scale-down goes no lower than the highest
   recommendation of the window (as the HPA does), so a short dip does not
   shed capacity that a cold start would have to rebuild.
5. **cooldown**: no scale-up within ``cooldown_up_s`` and no scale-down within
   ``cooldown_down_s`` of the last scale event.
6. bounds once more, so nothing above can leave the range.

Each guard that changes the value adds a :class:`GuardStep` with a reason code.
Pure: time comes in as ``now_s`` and the history as :class:`GuardState`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from controller.decision import GuardStep, Proposal

StaleRule = Literal["hold", "baseline", "scale_up_only"]
STALE_RULES: tuple[str, ...] = ("hold", "baseline", "scale_up_only")


@dataclass(frozen=True)
class Behavior:
    """Guardrail settings of one scale target.

    :param min_replicas: lowest replicas ever set.
    :param max_replicas: highest replicas ever set.
    :param max_step_up: most replicas added per interval (``None``: unlimited).
    :param max_step_down: most replicas removed per interval (``None``: unlimited).
    :param scale_down_stabilization_s: window whose highest recommendation bounds a scale-down (seconds).
    :param cooldown_up_s: after any scale event, no scale-up for this long (seconds).
    :param cooldown_down_s: after any scale event, no scale-down for this long (seconds).
    :param stale_rule: what to do when metrics are stale: ``hold``, ``baseline`` or ``scale_up_only``.
    """

    min_replicas: int = 1
    max_replicas: int = 16
    max_step_up: int | None = None
    max_step_down: int | None = None
    scale_down_stabilization_s: float = 300.0
    cooldown_up_s: float = 0.0
    cooldown_down_s: float = 0.0
    stale_rule: StaleRule = "hold"

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")
        for name in ("max_step_up", "max_step_down"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        for name in ("scale_down_stabilization_s", "cooldown_up_s", "cooldown_down_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.stale_rule not in STALE_RULES:
            raise ValueError(f"stale_rule must be one of {', '.join(STALE_RULES)}, got {self.stale_rule!r}")


@dataclass(frozen=True)
class GuardState:
    """Recent recommendations (for stabilisation) and the last scale event."""

    recommendations: tuple[tuple[float, int], ...] = ()
    last_scale_s: float = -math.inf


@dataclass(frozen=True)
class GuardResult:
    final: int
    steps: tuple[GuardStep, ...] = field(default_factory=tuple)
    state: GuardState = field(default_factory=GuardState)


def apply_guardrails(
    proposal: Proposal,
    current: int,
    now_s: float,
    behavior: Behavior,
    state: GuardState,
    *,
    stale: bool,
    baseline: Proposal | None = None,
) -> GuardResult:
    """Run the pipeline of the module docstring; pure."""
    steps: list[GuardStep] = []

    def change(guard: str, before: int, after: int, reason: str) -> int:
        if after != before:
            steps.append(GuardStep(guard, before, after, reason))
        return after

    if stale:
        rule = behavior.stale_rule
        raw = proposal.replicas if proposal.valid else current
        if rule == "hold":
            guard, value, why = "StaleMetricsHold", current, "metrics stale: hold"
        elif rule == "scale_up_only":
            guard, value, why = "StaleMetricsScaleUpOnly", max(current, raw), "metrics stale: only scale up"
        else:
            base = baseline.replicas if baseline is not None and baseline.valid else current
            guard, value, why = "StaleMetricsBaseline", max(current, base), "metrics stale: baseline proposal, never below current"
        steps.append(GuardStep(guard, raw, value, why))  # recorded even without a change: it explains the decision
    elif not proposal.valid:
        value = current
        steps.append(GuardStep("NoValidProposal", current, current, "policy has no valid proposal: hold"))
    else:
        value = proposal.replicas  # type: ignore[assignment]

    value = _bounds(value, behavior, change)
    recommendation = value
    if behavior.max_step_up is not None and value > current + behavior.max_step_up:
        value = change("ScaleUpLimit", value, current + behavior.max_step_up, f"at most +{behavior.max_step_up} per interval")
    if behavior.max_step_down is not None and value < current - behavior.max_step_down:
        value = change("ScaleDownLimit", value, current - behavior.max_step_down, f"at most -{behavior.max_step_down} per interval")

    window_start = now_s - behavior.scale_down_stabilization_s
    history = tuple(r for r in state.recommendations if r[0] > window_start) + ((now_s, recommendation),)
    if value < current:
        highest = max(r for _, r in history)
        stabilized = min(current, max(value, highest))
        value = change("ScaleDownStabilized", value, stabilized,
                       f"highest recommendation in the last {behavior.scale_down_stabilization_s:g} s is {highest}")

    since = now_s - state.last_scale_s
    if value > current and since < behavior.cooldown_up_s:
        value = change("Cooldown", value, current, f"last scale event {since:.0f} s ago < cooldown {behavior.cooldown_up_s:g} s")
    elif value < current and since < behavior.cooldown_down_s:
        value = change("Cooldown", value, current, f"last scale event {since:.0f} s ago < cooldown {behavior.cooldown_down_s:g} s")

    value = _bounds(value, behavior, change)
    last = now_s if value != current else state.last_scale_s
    return GuardResult(value, tuple(steps), GuardState(history, last))


def _bounds(value: int, behavior: Behavior, change) -> int:
    if value < behavior.min_replicas:
        return change("BelowMin", value, behavior.min_replicas, f"minReplicas is {behavior.min_replicas}")
    if value > behavior.max_replicas:
        return change("AboveMax", value, behavior.max_replicas, f"maxReplicas is {behavior.max_replicas}")
    return value
