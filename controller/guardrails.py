"""Guardrails: the ordered pipeline every policy's proposal goes through.

Order, and why:

1. **stale-metrics rule** decides what the proposal *is* when the metrics are
   stale: ``hold`` keeps the current replicas, ``scale_up_only`` takes
   ``max(current, proposal)``, ``baseline`` takes the baseline policy's
   proposal, floored at the current replicas. It comes first because every
   later guard reasons about a proposal, and on stale data the policy's own
   proposal is not one. Under no rule is a scale-down taken on stale data.
   A policy without a valid answer (no data yet) holds the current replicas.
2. **bounds** ``[min_replicas, max_replicas]``: the operator's hard limits,
   applied before the step limit so the step is measured towards a value
   that can actually be set.
3. **max step** per control interval, up and down: bounds how far one
   decision moves, whatever the policy asked for.
4. **scale-down stabilisation**: a scale-down goes no lower than the highest
   recommendation of the window (as the HPA does), so a short dip does not
   shed capacity that a cold start would take minutes to rebuild. It sees
   the recommendations *after* the bounds and *before* the step limit, so a
   step-limited descent is not mistaken for a lower recommendation.
   :func:`first_state` seeds it with the fleet as found.
5. **cooldown**: no scale-up within ``cooldown_up_s`` and no scale-down within
   ``cooldown_down_s`` of the last scale event, in either direction. Last,
   because it only vetoes a change that everything above allowed.
6. **bounds** once more, with the guard ``Bounds``, only when the current
   replicas are themselves out of range (an operator lowered ``max``): the
   limits win over the step limit, stabilisation, cooldown, and the
   never-down-on-stale rule; they are the one thing that can move replicas
   down on stale data.
7. **scale to zero** (``min_replicas`` 0): the last replica goes only after
   ``scale_to_zero_idle_s`` without traffic (KEDA's ``cooldownPeriod``);
   until then one stays (``ScaleToZeroIdle``). Traffic is any request held at
   the gateway, on a serving replica, or completed over the rate window;
   unknown counts as traffic.
8. **activation** (KEDA's ``activationThreshold``, Knative's activator): at
   zero replicas, more than ``activation_threshold`` requests held at the
   gateway scale to at least one (``Activation``), whatever the guards above
   said (cooldown and stale data included): the requests are waiting.

Each guard that changes the value adds a :class:`~controller.decision.GuardStep`
with a reason code; the stale rule and ``NoValidProposal`` add one even
without a change, because they explain why the policy was not followed.
Recommendations are recorded for stabilisation only when they carry
information (a valid proposal; not a hold for lack of data).
Pure: time comes in as ``now_s`` and the history as :class:`GuardState`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from controller.decision import GuardStep, Proposal

StaleRule = Literal["hold", "baseline", "scale_up_only"]
#: Scale-down stabilisation for a policy without a window of its own (the HPA's default window).
DEFAULT_STABILIZATION_S = 300.0
STALE_RULES: tuple[str, ...] = ("hold", "baseline", "scale_up_only")


@dataclass(frozen=True)
class Behavior:
    """Guardrail settings of one scale target.

    :param min_replicas: lowest replicas ever set.
    :param max_replicas: highest replicas ever set.
    :param max_step_up: most replicas added per interval (``None``: unlimited).
    :param max_step_down: most replicas removed per interval (``None``: unlimited).
    :param scale_down_stabilization_s: window whose highest recommendation bounds a scale-down
        (seconds; 0 disables). ``None`` (the default) lets the policy decide: 0 for a policy with a
        scale-down window of its own (``stabilizes_scale_down``: hpa, kpa, planner, learned), so two
        windows never stack, and :data:`DEFAULT_STABILIZATION_S` for one without (threshold, fixed);
        :class:`controller.autoscaling.Autoscaler` resolves it. Unresolved, the guard uses 0.
    :param cooldown_up_s: after any scale event, no scale-up for this long (seconds; default 0:
        reacting to a burst should not wait).
    :param cooldown_down_s: after any scale event, no scale-down for this long (seconds; default 0,
        the stabilisation window already damps scale-down).
    :param stale_rule: what to do when metrics are stale: ``hold``, ``baseline`` or ``scale_up_only``.
    :param activation_threshold: at zero replicas, scale to one when more requests than this are
        held at the gateway (default 0: on the first one).
    :param scale_to_zero_idle_s: with ``min_replicas`` 0, the last replica goes only after this long
        without traffic (seconds; default 300, KEDA's ``cooldownPeriod``).
    """

    min_replicas: int = 1
    max_replicas: int = 16
    max_step_up: int | None = None
    max_step_down: int | None = None
    scale_down_stabilization_s: float | None = None
    cooldown_up_s: float = 0.0
    cooldown_down_s: float = 0.0
    stale_rule: StaleRule = "hold"
    activation_threshold: float = 0.0
    scale_to_zero_idle_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got min_replicas={self.min_replicas}, max_replicas={self.max_replicas}")
        for name in ("max_step_up", "max_step_down"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        for name in ("scale_down_stabilization_s", "cooldown_up_s", "cooldown_down_s", "activation_threshold", "scale_to_zero_idle_s"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.stale_rule not in STALE_RULES:
            raise ValueError(f"stale_rule must be one of {', '.join(STALE_RULES)}, got {self.stale_rule!r}")

    def resolved(self, policy_stabilizes: bool) -> Behavior:
        """This behavior with an unset stabilisation window filled in for a policy that has
        (``policy_stabilizes``) or lacks a scale-down window of its own."""
        if self.scale_down_stabilization_s is not None:
            return self
        window = 0.0 if policy_stabilizes else DEFAULT_STABILIZATION_S
        return dataclasses.replace(self, scale_down_stabilization_s=window)


@dataclass(frozen=True)
class GuardState:
    """What the guardrails remember between decisions.

    :param recommendations: (time, recommendation) within the stabilisation window.
    :param last_scale_s: time of the last scale event (``-inf``: none yet).
    :param last_scale_direction: +1 up, -1 down, 0 none yet.
    :param last_traffic_s: last decision that saw traffic (``-inf``: none yet; the idle period
        of scale to zero counts from here).
    :param last_decision_s: time of the last decision (``-inf``: none yet).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    last_scale_s: float = -math.inf
    last_scale_direction: int = 0
    last_traffic_s: float = -math.inf
    last_decision_s: float = -math.inf


def first_state(now_s: float, current_replicas: int, hold: int | None = None, last_scale_s: float = -math.inf,
                last_scale_direction: int = 0) -> GuardState:
    """The state of a first decision over a running fleet: its replicas (or ``hold``, if higher) are a
    recommendation made now (the HPA's ``recordInitialRecommendation``), and the idle clock of scale
    to zero starts now. A controller that starts, for the first time or after a restart, holds the
    fleet for a window."""
    rec = current_replicas if hold is None else max(current_replicas, hold)
    return GuardState(((now_s, rec),), last_scale_s, last_scale_direction, now_s, now_s)


class GuardResult(NamedTuple):
    """``(final, steps, reason, state)``; also readable by name."""

    final: int
    steps: tuple[GuardStep, ...]
    reason: str
    state: GuardState


def apply_guardrails(
    proposal: Proposal,
    current_replicas: int,
    now_s: float,
    behavior: Behavior,
    state: GuardState,
    *,
    stale: bool,
    baseline: Proposal | None = None,
    pending: float = 0.0,
    traffic: bool = True,
) -> GuardResult:
    """Run the pipeline of the module docstring; pure.

    :param proposal: the policy's proposal (``replicas=None``: no valid answer).
    :param current_replicas: replicas the scale target has now.
    :param now_s: decision time, seconds.
    :param behavior: guardrail settings.
    :param state: history from the previous call.
    :param stale: the metrics the decision rests on are missing or non-finite.
    :param baseline: the baseline policy's proposal, for the ``baseline`` stale rule.
    :param pending: requests held at the gateway (the activation signal).
    :param traffic: whether the target has traffic now (or it is unknown).
    :returns: final replicas, the guard steps, a one-line reason, and the next state.
    """
    current = current_replicas
    steps: list[GuardStep] = []

    def change(guard: str, before: int, after: int, reason: str) -> int:
        if after != before:
            steps.append(GuardStep(guard, before, after, reason))
        return after

    informative = True
    if stale:
        rule = behavior.stale_rule
        raw = proposal.replicas if proposal.valid else current
        if rule == "hold":
            guard, value, why = "StaleMetricsHold", current, "metrics stale: hold the current replicas"
            informative = False
        elif rule == "scale_up_only":
            guard, value, why = "StaleMetricsScaleUpOnly", max(current, raw), "metrics stale: scale up only"
            informative = proposal.valid
        else:
            usable = baseline is not None and baseline.valid
            base = baseline.replicas if usable else current  # type: ignore[union-attr]
            guard, value, why = "StaleMetricsBaseline", max(current, base), (
                "metrics stale: the baseline's proposal, never below current" if usable else "metrics stale: no baseline proposal, hold")
            informative = usable
        steps.append(GuardStep(guard, raw, value, why))  # recorded even without a change: it explains the decision
    elif not proposal.valid:
        value = current
        informative = False
        steps.append(GuardStep("NoValidProposal", current, current, "the policy has no valid proposal: hold"))
    else:
        value = proposal.replicas  # type: ignore[assignment]

    value = _bounds(value, behavior, change)
    recommendation = value
    if behavior.max_step_up is not None and value > current + behavior.max_step_up:
        value = change("ScaleUpLimit", value, current + behavior.max_step_up, f"at most +{behavior.max_step_up} per interval")
    if behavior.max_step_down is not None and value < current - behavior.max_step_down:
        value = change("ScaleDownLimit", value, current - behavior.max_step_down, f"at most -{behavior.max_step_down} per interval")

    window = behavior.scale_down_stabilization_s or 0.0
    history = tuple(r for r in state.recommendations if r[0] > now_s - window)
    if informative:
        history = history + ((now_s, recommendation),)
    if value < current and history:
        highest = max(r for _, r in history)
        stabilized = min(current, max(value, highest))
        value = change("ScaleDownStabilized", value, stabilized, f"highest recommendation in the last {window:g} s is {highest}")

    since = now_s - state.last_scale_s
    if value > current and since < behavior.cooldown_up_s:
        value = change("Cooldown", value, current, f"last scale event {since:.0f} s ago < scale-up cooldown {behavior.cooldown_up_s:g} s")
    elif value < current and since < behavior.cooldown_down_s:
        value = change("Cooldown", value, current, f"last scale event {since:.0f} s ago < scale-down cooldown {behavior.cooldown_down_s:g} s")

    value = _bounds(value, behavior, lambda _g, before, after, why: change("Bounds", before, after, why))

    last_traffic = now_s if traffic else state.last_traffic_s
    if value == 0 and current > 0:
        idle = now_s - last_traffic
        if idle < behavior.scale_to_zero_idle_s:
            value = change("ScaleToZeroIdle", value, 1, f"traffic {idle:.0f} s ago < scale-to-zero idle period {behavior.scale_to_zero_idle_s:g} s")
    if current == 0 and value == 0 and pending > behavior.activation_threshold:
        value = change("Activation", value, min(1, behavior.max_replicas), f"{pending:g} requests held at the gateway > activation threshold {behavior.activation_threshold:g}")

    if value != current:
        new_state = GuardState(history, now_s, 1 if value > current else -1, last_traffic, now_s)
    else:
        new_state = GuardState(history, state.last_scale_s, state.last_scale_direction, last_traffic, now_s)
    return GuardResult(value, tuple(steps), _reason(steps, current, value), new_state)


def _bounds(value: int, behavior: Behavior, change: Callable[[str, int, int, str], int]) -> int:
    if value < behavior.min_replicas:
        return change("BelowMin", value, behavior.min_replicas, f"minReplicas is {behavior.min_replicas}")
    if value > behavior.max_replicas:
        return change("AboveMax", value, behavior.max_replicas, f"maxReplicas is {behavior.max_replicas}")
    return value


def _reason(steps: list[GuardStep], current: int, final: int) -> str:
    """The last guard that acted, else the plain direction of the change."""
    if steps:
        return f"{steps[-1].guard}: {steps[-1].reason}"
    if final > current:
        return f"ScaleUp: {current} -> {final}"
    if final < current:
        return f"ScaleDown: {current} -> {final}"
    return f"NoChange: {final}"
