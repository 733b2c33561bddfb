"""The Kubernetes HPA v2 algorithm on one per-replica metric.

Follows kubernetes/kubernetes pkg/controller/podautoscaler:

- ``replica_calculator.go`` (``calcPlainMetricReplicas``): usage ratio =
  average metric of the pods that report it / target. Within the tolerance
  (0.1) nothing changes. Pods without a sample (here: replicas not Ready)
  are *missing*: when scaling down they count as exactly at target, when
  scaling up as zero; if filling them in flips the direction or lands within
  tolerance, the current replicas stay.
- ``horizontal.go`` (``stabilizeRecommendationWithBehaviors``,
  ``convertDesiredReplicasWithBehaviorRate``): scale-up and scale-down
  stabilisation windows over past recommendations, then rate limits from
  the scaling policies (Pods or Percent per period, ``selectPolicy``
  Max/Min/Disabled) measured from the replicas at the start of each period.

Scale events are taken from the observed replica count: a change between two
calls is an event at the earlier call, when the scale was written, so the
history is right even when guardrails or people changed the replicas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext

DEFAULT_TOLERANCE = 0.1


def _finite(snapshot: Mapping[str, float], key: str) -> float:
    value = snapshot.get(key, math.nan)
    return float(value) if sig.is_usable(value) else math.nan


def _per_ready(keys: tuple[str, ...]) -> Callable[[Mapping[str, float]], float]:
    def value(snapshot: Mapping[str, float]) -> float:
        ready = _finite(snapshot, sig.REPLICAS_READY)
        total = sum(_finite(snapshot, k) for k in keys)
        return total / ready if ready > 0 else math.nan

    return value


#: Per-replica metrics a user can target; each reads the snapshot.
METRICS: dict[str, Callable[[Mapping[str, float]], float]] = {
    "requests_per_replica": _per_ready(("requests_running", "requests_waiting")),
    "running_per_replica": _per_ready(("requests_running",)),
    "waiting_per_replica": _per_ready(("requests_waiting",)),
    "tokens_per_replica": _per_ready(("prompt_token_rate", "generation_token_rate")),
    "gpu_utilization": lambda s: _finite(s, "gpu_utilization"),
    "kv_cache_usage": lambda s: _finite(s, "kv_cache_usage"),
}


@dataclass(frozen=True)
class HpaScalingPolicy:
    """``type`` Pods or Percent; ``value`` per ``period_s`` seconds."""

    type: Literal["Pods", "Percent"]
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent") or self.value <= 0 or self.period_s <= 0:
            raise ValueError(f"invalid HPA scaling policy {self}")


@dataclass(frozen=True)
class HpaScalingRules:
    """One direction of ``behavior``: stabilisation window, select policy, scaling policies."""

    stabilization_window_s: float
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: tuple[HpaScalingPolicy, ...] = ()


DEFAULT_SCALE_UP = HpaScalingRules(0.0, "Max", (HpaScalingPolicy("Percent", 100, 15.0), HpaScalingPolicy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = HpaScalingRules(300.0, "Max", (HpaScalingPolicy("Percent", 100, 15.0),))


@dataclass(frozen=True)
class HpaBehavior:
    scale_up: HpaScalingRules = DEFAULT_SCALE_UP
    scale_down: HpaScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class HpaState:
    """Past recommendations and scale events (time, signed replica change), and the last seen replicas."""

    recommendations: tuple[tuple[float, int], ...] = ()
    events: tuple[tuple[float, int], ...] = ()
    last_replicas: int | None = None
    last_time_s: float = -math.inf


def metric_replicas(value: float, target: float, ready: int, missing: int, current: int, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """``calcPlainMetricReplicas``: replicas for a per-pod average ``value`` over ``ready`` pods."""
    if ready <= 0:
        return current
    usage_ratio = value / target
    if missing == 0:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current
        return math.ceil(usage_ratio * ready)
    total = value * ready
    filled = total + (target * missing if usage_ratio < 1.0 else 0.0)
    new_ratio = filled / (target * (ready + missing))
    if abs(1.0 - new_ratio) <= tolerance or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return current
    new_replicas = math.ceil(new_ratio * (ready + missing))
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current
    return new_replicas


def _change_in_period(events: tuple[tuple[float, int], ...], now_s: float, period_s: float, up: bool) -> int:
    return sum(abs(c) for t, c in events if t > now_s - period_s and (c > 0) == up)


def scale_up_limit(current: int, events: tuple[tuple[float, int], ...], now_s: float, rules: HpaScalingRules) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (max, -(2**31)) if rules.select_policy == "Max" else (min, 2**31 - 1)
    for policy in rules.policies:
        start = current - _change_in_period(events, now_s, policy.period_s, True) + _change_in_period(events, now_s, policy.period_s, False)
        proposed = start + policy.value if policy.type == "Pods" else math.ceil(start * (1 + policy.value / 100.0))
        result = pick(result, proposed)
    return result


def scale_down_limit(current: int, events: tuple[tuple[float, int], ...], now_s: float, rules: HpaScalingRules) -> int:
    """``calculateScaleDownLimitWithBehaviors`` (Max picks the policy allowing the biggest drop)."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (min, 2**31 - 1) if rules.select_policy == "Max" else (max, -(2**31))
    for policy in rules.policies:
        start = current - _change_in_period(events, now_s, policy.period_s, True) + _change_in_period(events, now_s, policy.period_s, False)
        proposed = start - policy.value if policy.type == "Pods" else int(start * (1 - policy.value / 100.0))
        result = pick(result, proposed)
    return result


@dataclass(frozen=True)
class HpaPolicy:
    """HPA v2 on ``metric`` (a key of :data:`METRICS`) with an average ``target`` per replica."""

    metric: str
    target: float
    tolerance: float = DEFAULT_TOLERANCE
    behavior: HpaBehavior = field(default_factory=HpaBehavior)
    name: str = "hpa"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown HPA metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.target <= 0 or self.tolerance < 0:
            raise ValueError("HPA target must be positive and tolerance non-negative")

    def initial_state(self) -> HpaState:
        return HpaState()

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: HpaState) -> tuple[Proposal, HpaState]:
        now, current = ctx.now_s, ctx.current_replicas
        events = state.events
        if state.last_replicas is not None and state.last_replicas != current:
            events = events + ((state.last_time_s, current - state.last_replicas),)
        horizon = max([p.period_s for p in self.behavior.scale_up.policies + self.behavior.scale_down.policies] + [0.0])
        events = tuple(e for e in events if e[0] > now - horizon)
        value = METRICS[self.metric](snapshot)
        ready = _finite(snapshot, sig.REPLICAS_READY)
        if not math.isfinite(value) or not math.isfinite(ready):
            return Proposal(None, (f"metric {self.metric} unavailable",)), HpaState(state.recommendations, events, current, now)
        ready_pods = int(ready)
        missing = max(current - ready_pods, 0)
        raw = metric_replicas(value, self.target, ready_pods, missing, current, self.tolerance)
        reasons = [f"{self.metric}={value:.3g} target={self.target:g} ready={ready_pods} missing={missing} -> {raw}"]
        # stabilizeRecommendationWithBehaviors
        up_window = self.behavior.scale_up.stabilization_window_s
        down_window = self.behavior.scale_down.stabilization_window_s
        up_rec = down_rec = raw
        for t, rec in state.recommendations:
            if t > now - up_window:
                up_rec = min(up_rec, rec)
            if t > now - down_window:
                down_rec = max(down_rec, rec)
        stabilized = min(max(current, up_rec), down_rec)
        if stabilized != raw:
            reasons.append(f"stabilized to {stabilized}")
        keep = max(up_window, down_window)
        recommendations = tuple(r for r in state.recommendations if r[0] > now - keep) + ((now, raw),)
        # convertDesiredReplicasWithBehaviorRate
        desired = stabilized
        if desired > current:
            limit = max(scale_up_limit(current, events, now, self.behavior.scale_up), current)
            if limit < ctx.max_replicas and desired > limit:
                reasons.append(f"ScaleUpLimit {limit}")
            desired = min(desired, min(limit, ctx.max_replicas))
        elif desired < current:
            limit = min(scale_down_limit(current, events, now, self.behavior.scale_down), current)
            if limit > ctx.min_replicas and desired < limit:
                reasons.append(f"ScaleDownLimit {limit}")
            desired = max(desired, max(limit, ctx.min_replicas))
        return Proposal(desired, tuple(reasons)), HpaState(recommendations, events, current, now)
