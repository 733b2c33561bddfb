"""The Kubernetes HPA v2 algorithm on one per-replica metric.

Follows kubernetes/kubernetes ``pkg/controller/podautoscaler``:

- ``replica_calculator.go`` (``calcPlainMetricReplicas``, ``groupPods``):
  usage ratio = average metric of the ready pods / target. Within the
  tolerance (0.1) nothing changes. Not-ready pods are set aside and, only
  when the ratio says scale up, count as using 0. Pods without a sample
  (*missing*) count as exactly at target when scaling down and as 0 when
  scaling up. If filling the gaps flips the direction or lands within the
  tolerance, the current replicas stay.
- ``horizontal.go`` (``reconcileAutoscaler``, ``recordInitialRecommendation``,
  ``stabilizeRecommendationWithBehaviors``,
  ``convertDesiredReplicasWithBehaviorRate``,
  ``calculateScaleUpLimitWithScalingRules``,
  ``calculateScaleDownLimitWithBehaviors``): a replica count outside
  ``[min, max]`` goes straight to the bound; otherwise the recommendation is
  stabilised over the scale-up and scale-down windows (lowest recent
  recommendation for up, highest for down), then rate-limited by the scaling
  policies (Pods or Percent per period, ``selectPolicy`` Max/Min/Disabled)
  counted from the replicas at the start of each period, and bounded.

Mapping from the aggregated snapshot to the HPA's per-pod view: the ready
replicas are the pods with a sample; the starting replicas are the not-ready
pods; no pod is *missing* (a snapshot cannot tell a ready pod without a
sample apart), but :func:`metric_replicas` takes a missing count for callers
that can.

Scale events are taken from the observed replica count: a change between two
calls is an event at the earlier call, when the scale was written, so the
history is right even when guardrails or people changed the replicas (the
HPA itself records the events it writes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext

#: ``--horizontal-pod-autoscaler-tolerance`` default.
DEFAULT_TOLERANCE = 0.1

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)


def _finite(snapshot: Mapping[str, float], key: str) -> float:
    value = snapshot.get(key, math.nan)
    return float(value) if sig.is_usable(value) else math.nan


def _per_ready(keys: tuple[str, ...]) -> Callable[[Mapping[str, float]], float]:
    def value(snapshot: Mapping[str, float]) -> float:
        ready = _finite(snapshot, sig.REPLICAS_READY)
        total = sum(_finite(snapshot, k) for k in keys)
        return total / ready if ready > 0 else math.nan

    return value


#: Per-replica metrics a user can target; each reads the snapshot (NaN when it cannot).
METRICS: dict[str, Callable[[Mapping[str, float]], float]] = {
    "requests_per_replica": _per_ready(("requests_running", "requests_waiting")),
    "running_per_replica": _per_ready(("requests_running",)),
    "waiting_per_replica": _per_ready(("requests_waiting",)),
    "tokens_per_replica": _per_ready(("prompt_token_rate", "generation_token_rate")),
    "gpu_utilization": lambda s: _finite(s, "gpu_utilization"),
    "kv_cache_usage": lambda s: _finite(s, "kv_cache_usage"),
}

#: The snapshot signals each metric reads (for staleness checks).
METRIC_SIGNALS: dict[str, tuple[str, ...]] = {
    "requests_per_replica": ("requests_running", "requests_waiting"),
    "running_per_replica": ("requests_running",),
    "waiting_per_replica": ("requests_waiting",),
    "tokens_per_replica": ("prompt_token_rate", "generation_token_rate"),
    "gpu_utilization": ("gpu_utilization",),
    "kv_cache_usage": ("kv_cache_usage",),
}


@dataclass(frozen=True)
class HpaScalingPolicy:
    """One ``HPAScalingPolicy``: change by ``value`` Pods or Percent per ``period_s`` seconds."""

    type: Literal["Pods", "Percent"]
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise ValueError(f"HPA scaling policy type must be Pods or Percent, got {self.type!r}")
        if self.value <= 0 or self.period_s <= 0:
            raise ValueError(f"HPA scaling policy needs value > 0 and period_s > 0, got {self.value}, {self.period_s}")


@dataclass(frozen=True)
class HpaScalingRules:
    """One direction of ``behavior``: stabilisation window (s), select policy, scaling policies."""

    stabilization_window_s: float
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: tuple[HpaScalingPolicy, ...] = ()

    def __post_init__(self) -> None:
        if self.stabilization_window_s < 0:
            raise ValueError(f"stabilization_window_s must be >= 0, got {self.stabilization_window_s}")
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"select_policy must be Max, Min or Disabled, got {self.select_policy!r}")


#: Kubernetes defaults (``SetDefaults_HorizontalPodAutoscalerBehavior``): scale up by the
#: larger of 100% and 4 pods per 15 s at once; scale down by up to 100% per 15 s after a 300 s window.
DEFAULT_SCALE_UP = HpaScalingRules(0.0, "Max", (HpaScalingPolicy("Percent", 100, 15.0), HpaScalingPolicy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN = HpaScalingRules(300.0, "Max", (HpaScalingPolicy("Percent", 100, 15.0),))


@dataclass(frozen=True)
class HpaBehavior:
    """``spec.behavior``: rules for each direction (Kubernetes defaults)."""

    scale_up: HpaScalingRules = DEFAULT_SCALE_UP
    scale_down: HpaScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class HpaState:
    """The HPA controller's memory for one target.

    :param recommendations: (time, raw recommendation) within the longer stabilisation window.
    :param events: (time, signed replica change) within the longest policy period.
    :param last_replicas: replicas seen at the previous call (``None`` before the first).
    :param last_time_s: time of the previous call.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    events: tuple[tuple[float, int], ...] = ()
    last_replicas: int | None = None
    last_time_s: float = -math.inf


def _ceil(x: float) -> int:
    """``ceil`` that ignores float noise (10 / 57 * 57 is 10.000000000000002): Kubernetes
    computes in integer milli-units, where such products are exact."""
    return math.ceil(round(x, 9))


def metric_replicas(
    value: float,
    target: float,
    ready: int,
    missing: int,
    current: int,
    tolerance: float = DEFAULT_TOLERANCE,
    unready: int = 0,
) -> int:
    """``calcPlainMetricReplicas``: replicas for a per-pod average ``value`` over ``ready`` pods.

    :param value: average metric over the ``ready`` pods that report it.
    :param target: target average value per pod.
    :param ready: pods with a sample (must be > 0).
    :param missing: running pods without a sample: at target on scale-down, 0 on scale-up.
    :param current: the scale's current replicas (returned when nothing should change).
    :param tolerance: no change while ``|1 - ratio| <= tolerance``.
    :param unready: not-ready pods: left out, or 0 when the ratio says scale up.
    """
    if ready <= 0:
        raise ValueError("metric_replicas needs at least one pod with a sample")
    usage_ratio = value / target
    scale_up_with_unready = unready > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current
        return _ceil(usage_ratio * ready)
    total, pods = value * ready, ready
    if missing > 0:
        if usage_ratio < 1.0:
            total += target * missing  # on a scale-down, missing pods use exactly the target
            pods += missing
        elif usage_ratio > 1.0:
            pods += missing  # on a scale-up, missing pods use 0
    if scale_up_with_unready:
        pods += unready  # on a scale-up, not-ready pods use 0
    new_ratio = total / (target * pods)
    if abs(1.0 - new_ratio) <= tolerance or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return current
    new_replicas = _ceil(new_ratio * pods)
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current
    return new_replicas


def _change_in_period(events: tuple[tuple[float, int], ...], now_s: float, period_s: float, up: bool) -> int:
    """``getReplicasChangePerPeriod`` over the scale-up (or scale-down) events after ``now - period``."""
    return sum(abs(c) for t, c in events if t > now_s - period_s and (c > 0) == up)


def _period_start(current: int, events: tuple[tuple[float, int], ...], now_s: float, period_s: float) -> int:
    added = _change_in_period(events, now_s, period_s, True)
    deleted = _change_in_period(events, now_s, period_s, False)
    return current - added + deleted


def scale_up_limit(current: int, events: tuple[tuple[float, int], ...], now_s: float, rules: HpaScalingRules) -> int:
    """``calculateScaleUpLimitWithScalingRules``: Max picks the policy allowing the most pods."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (min, _INT32_MAX) if rules.select_policy == "Min" else (max, _INT32_MIN)
    for policy in rules.policies:
        start = _period_start(current, events, now_s, policy.period_s)
        # Percent rounds up, else a small target could never grow.
        proposed = start + policy.value if policy.type == "Pods" else math.ceil(start * (1 + policy.value / 100.0))
        result = pick(result, proposed)
    return result


def scale_down_limit(current: int, events: tuple[tuple[float, int], ...], now_s: float, rules: HpaScalingRules) -> int:
    """``calculateScaleDownLimitWithBehaviors``: Max picks the policy allowing the biggest drop."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (max, _INT32_MIN) if rules.select_policy == "Min" else (min, _INT32_MAX)
    for policy in rules.policies:
        start = _period_start(current, events, now_s, policy.period_s)
        proposed = start - policy.value if policy.type == "Pods" else int(start * (1 - policy.value / 100.0))
        result = pick(result, proposed)
    return result


def stabilize(raw: int, current: int, now_s: float, recommendations: tuple[tuple[float, int], ...],
              behavior: HpaBehavior) -> int:
    """``stabilizeRecommendationWithBehaviors``: between the lowest recommendation of the scale-up
    window and the highest of the scale-down window, as close to ``current`` as they allow."""
    up_cutoff = now_s - behavior.scale_up.stabilization_window_s
    down_cutoff = now_s - behavior.scale_down.stabilization_window_s
    up_rec = down_rec = raw
    for t, rec in recommendations:
        if t > up_cutoff:
            up_rec = min(up_rec, rec)
        if t > down_cutoff:
            down_rec = max(down_rec, rec)
    return min(max(current, up_rec), down_rec)


def rate_limit(desired: int, current: int, now_s: float, events: tuple[tuple[float, int], ...], behavior: HpaBehavior,
               min_replicas: int, max_replicas: int) -> tuple[int, str]:
    """``convertDesiredReplicasWithBehaviorRate``: the allowed value and its condition reason."""
    if desired > current:
        limit = max(scale_up_limit(current, events, now_s, behavior.scale_up), current)
        allowed, reason = (limit, "ScaleUpLimit") if max_replicas > limit else (max_replicas, "TooManyReplicas")
        if desired > allowed:
            return allowed, reason
    elif desired < current:
        limit = min(scale_down_limit(current, events, now_s, behavior.scale_down), current)
        allowed, reason = (limit, "ScaleDownLimit") if min_replicas < limit else (min_replicas, "TooFewReplicas")
        if desired < allowed:
            return allowed, reason
    return desired, "DesiredWithinRange"


@dataclass(frozen=True)
class HpaPolicy:
    """HPA v2 on ``metric`` (a key of :data:`METRICS`) with an average ``target`` per replica.

    :param metric: per-replica metric name, e.g. ``requests_per_replica``.
    :param target: target average value per ready replica (``AverageValue``).
    :param behavior: ``spec.behavior`` (Kubernetes defaults).
    :param tolerance: relative dead band around the target (0.1).
    """

    metric: str
    target: float
    behavior: HpaBehavior = field(default_factory=HpaBehavior)
    tolerance: float = DEFAULT_TOLERANCE
    name: str = "hpa"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown HPA metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if not self.target > 0:
            raise ValueError(f"HPA target must be positive, got {self.target}")
        if self.tolerance < 0:
            raise ValueError(f"HPA tolerance must be >= 0, got {self.tolerance}")

    @property
    def required_signals(self) -> tuple[str, ...]:
        return METRIC_SIGNALS[self.metric]

    def initial_state(self) -> HpaState:
        return HpaState()

    def _history(self) -> tuple[float, float]:
        """How long recommendations and scale events are kept (s)."""
        periods = [p.period_s for p in self.behavior.scale_up.policies + self.behavior.scale_down.policies]
        return (max(self.behavior.scale_up.stabilization_window_s, self.behavior.scale_down.stabilization_window_s),
                max(periods, default=0.0))

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: HpaState) -> tuple[Proposal, HpaState]:
        now, current = ctx.now_s, ctx.current_replicas
        keep_recs, keep_events = self._history()
        events = state.events
        if state.last_replicas is not None and state.last_replicas != current:
            events = events + ((state.last_time_s, current - state.last_replicas),)
        events = tuple(e for e in events if e[0] > now - keep_events)
        recommendations = tuple(r for r in state.recommendations if r[0] > now - keep_recs)
        if state.last_replicas is None:  # recordInitialRecommendation
            recommendations = ((now, current),)

        def done(proposal: Proposal, recs: tuple[tuple[float, int], ...] = recommendations) -> tuple[Proposal, HpaState]:
            return proposal, HpaState(recs, events, current, now)

        if current == 0 and ctx.min_replicas != 0:
            return done(Proposal(current, ("ScalingDisabled: the target has zero replicas",)))
        if current > ctx.max_replicas:
            return done(Proposal(ctx.max_replicas, (f"current {current} above maxReplicas {ctx.max_replicas}",)))
        if current < ctx.min_replicas:
            return done(Proposal(ctx.min_replicas, (f"current {current} below minReplicas {ctx.min_replicas}",)))

        value = METRICS[self.metric](snapshot)
        ready = _finite(snapshot, sig.REPLICAS_READY)
        if not math.isfinite(value) or not ready >= 1:
            return done(Proposal(None, (f"FailedGetPodsMetric: {self.metric} unavailable (ready={ready:g})",)))
        starting = _finite(snapshot, sig.REPLICAS_STARTING)
        ready_pods, unready = int(ready), int(starting) if starting > 0 else 0
        raw = metric_replicas(value, self.target, ready_pods, 0, current, self.tolerance, unready=unready)
        reasons = [f"{self.metric}={value:.4g} target={self.target:g} ready={ready_pods} unready={unready} -> {raw}"]

        stabilized = stabilize(raw, current, now, recommendations, self.behavior)
        recommendations = recommendations + ((now, raw),)
        if stabilized != raw:
            reasons.append(f"{'ScaleUpStabilized' if stabilized < raw else 'ScaleDownStabilized'}: {raw} -> {stabilized}")
        desired, why = rate_limit(stabilized, current, now, events, self.behavior, ctx.min_replicas, ctx.max_replicas)
        if desired != stabilized:
            reasons.append(f"{why}: {stabilized} -> {desired}")
        return done(Proposal(desired, tuple(reasons)), recommendations)
