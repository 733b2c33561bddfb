"""The Kubernetes HPA v2 algorithm on per-pod metrics, as kube-controller-manager runs it.

Follows kubernetes/kubernetes ``pkg/controller/podautoscaler``:

- ``replica_calculator.go`` (``calcPlainMetricReplicas``, ``groupPods``,
  ``GetMetricUsageRatio``), in integer milli-units as Kubernetes computes:
  usage = (sum of the ready pods' values) // ready pods; ratio = usage / target.
  Within the tolerances (``1 - down <= ratio <= 1 + up``) nothing changes.
  Pods are grouped as :mod:`controller.load` describes (Pending = unready, no
  sample = missing, terminating ignored). Unready pods are left out, and count
  as 0 only when the ratio says scale up; missing pods count as exactly the
  target on a scale-down and as 0 on a scale-up. If filling the gaps flips the
  direction or lands within the tolerance, the current replicas stay.
- ``horizontal.go`` (``reconcileAutoscaler``, ``computeReplicasForMetrics``):
  a replica count outside ``[min, max]`` goes straight to the bound; several
  metrics give the largest proposal, and if any metric is invalid a
  scale-down is refused. Then, when ``behavior`` is absent, the *legacy* path
  ``normalizeDesiredReplicas``: the highest recommendation of the downscale
  stabilisation window (``--horizontal-pod-autoscaler-downscale-stabilization``,
  5 minutes, recommendations at the cutoff included), then
  ``convertDesiredReplicasWithRules``: scale up to at most
  ``max(2 x current, 4)`` per sync, no scale-down limit. With ``behavior``,
  ``normalizeDesiredReplicasWithBehaviors``: stabilisation over both windows
  (lowest recent recommendation for up, highest for down), then the scaling
  policies (Pods or Percent per period, ``selectPolicy`` Max/Min/Disabled)
  counted from the replicas at the start of each period, then the bounds.

Scale events (for the behavior rate limits) are taken from the observed
replica count: a change between two calls is an event at the earlier call,
when the scale was written. Kubernetes records only the events it writes; the
two agree unless someone else scales the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

from controller import load
from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext

#: ``--horizontal-pod-autoscaler-tolerance`` default.
DEFAULT_TOLERANCE = 0.1
#: ``--horizontal-pod-autoscaler-downscale-stabilization`` default (legacy path), seconds.
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0
#: ``scaleUpLimitFactor`` and ``scaleUpLimitMinimum`` of the legacy path.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

_INT32_MAX = 2**31 - 1
_INT32_MIN = -(2**31)

#: Per-pod metrics a user can target: the snapshot keys summed over the pods with a sample
#: (``sum``), or the snapshot's average over them (``avg``).
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "requests_per_replica": ("sum", ("requests_running", "requests_waiting")),
    "running_per_replica": ("sum", ("requests_running",)),
    "waiting_per_replica": ("sum", ("requests_waiting",)),
    "tokens_per_replica": ("sum", ("prompt_token_rate", "generation_token_rate")),
    "gpu_utilization": ("avg", ("gpu_utilization",)),
    "kv_cache_usage": ("avg", ("kv_cache_usage",)),
}

#: The snapshot signals each metric reads (for staleness checks).
METRIC_SIGNALS: dict[str, tuple[str, ...]] = {name: keys for name, (_, keys) in METRICS.items()}


def metric_total(snapshot: Mapping[str, float], metric: str, pods: int) -> float:
    """The metric summed over the ``pods`` with a sample (NaN when unknown)."""
    kind, keys = METRICS[metric]
    value = load.total(snapshot, keys)
    return value * pods if kind == "avg" else value


class Tolerances(NamedTuple):
    """``Tolerances``: no change while ``1 - scale_down <= ratio <= 1 + scale_up``."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        return 1.0 - self.scale_down <= ratio <= 1.0 + self.scale_up


def milli(x: float) -> int:
    """``resource.Quantity.MilliValue()``: milli-units, rounded up (float noise ignored)."""
    return math.ceil(round(x * 1000.0, 6))


def _ceil(x: float) -> int:
    return math.ceil(x)


def calc_plain_metric_replicas(total_milli: int, target_milli: int, ready: int, current: int,
                               tolerances: Tolerances = Tolerances(), unready: int = 0, missing: int = 0) -> tuple[int, int]:
    """``calcPlainMetricReplicas``: (replicas, usage) from the ready pods' summed milli-value.

    :param total_milli: sum of the metric over the ``ready`` pods (milli-units).
    :param target_milli: target average value per pod (milli-units, > 0).
    :param ready: pods with a sample (must be > 0).
    :param current: the scale's current replicas (returned when nothing should change).
    :param tolerances: per-direction tolerances.
    :param unready: Pending pods: left out, or 0 when the ratio says scale up.
    :param missing: running pods without a sample: at target on scale-down, 0 on scale-up.
    :returns: the replicas and the average usage (milli-units), as Kubernetes reports it.
    """
    if ready <= 0:
        raise ValueError("did not receive metrics for targeted pods (pods might be unready)")
    usage = total_milli // ready
    usage_ratio = usage / target_milli
    scale_up_with_unready = unready > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if tolerances.within(usage_ratio):
            return current, usage
        return _ceil(usage_ratio * ready), usage
    new_total, pods = total_milli, ready
    if missing > 0:
        if usage_ratio < 1.0:
            new_total += target_milli * missing  # on a scale-down, missing pods use exactly the target
            pods += missing
        elif usage_ratio > 1.0:
            pods += missing  # on a scale-up, missing pods use 0
    if scale_up_with_unready:
        pods += unready  # on a scale-up, unready pods use 0
    new_ratio = (new_total // pods) / target_milli
    if tolerances.within(new_ratio) or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return current, usage
    new_replicas = _ceil(new_ratio * pods)
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current, usage
    return new_replicas, usage


def metric_replicas(value: float, target: float, ready: int, missing: int, current: int,
                    tolerance: float | Tolerances = DEFAULT_TOLERANCE, unready: int = 0) -> int:
    """:func:`calc_plain_metric_replicas` for an average ``value`` per ready pod in natural units."""
    tolerances = tolerance if isinstance(tolerance, Tolerances) else Tolerances(tolerance, tolerance)
    replicas, _ = calc_plain_metric_replicas(milli(value * ready), milli(target), ready, current, tolerances, unready, missing)
    return replicas


@dataclass(frozen=True)
class HpaScalingPolicy:
    """One ``HPAScalingPolicy``: change by ``value`` Pods or Percent per ``period_s`` (whole seconds, 1..1800)."""

    type: Literal["Pods", "Percent"]
    value: int
    period_s: int

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise ValueError(f"HPA scaling policy type must be Pods or Percent, got {self.type!r}")
        if not isinstance(self.value, int) or not isinstance(self.period_s, int):
            raise ValueError(f"HPA scaling policy value and periodSeconds must be integers, got {self.value!r}, {self.period_s!r}")
        if self.value <= 0 or not 0 < self.period_s <= 1800:
            raise ValueError(f"HPA scaling policy needs value > 0 and 0 < periodSeconds <= 1800, got {self.value}, {self.period_s}")


@dataclass(frozen=True)
class HpaScalingRules:
    """One direction of ``behavior``: stabilisation window (whole s), select policy, scaling policies, tolerance."""

    stabilization_window_s: int
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: tuple[HpaScalingPolicy, ...] = ()
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.stabilization_window_s, int) or not 0 <= self.stabilization_window_s <= 3600:
            raise ValueError(f"stabilization_window_s must be an integer in [0, 3600], got {self.stabilization_window_s!r}")
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"select_policy must be Max, Min or Disabled, got {self.select_policy!r}")
        if not self.policies:
            raise ValueError("HPA scaling rules need at least one policy")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"HPA tolerance must be >= 0, got {self.tolerance}")


#: Kubernetes defaults (``SetDefaults_HorizontalPodAutoscalerBehavior``): scale up by the
#: larger of 100% and 4 pods per 15 s at once; scale down by up to 100% per 15 s after a 300 s window.
DEFAULT_SCALE_UP = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15)))
DEFAULT_SCALE_DOWN = HpaScalingRules(300, "Max", (HpaScalingPolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class HpaBehavior:
    """``spec.behavior``: rules for each direction (Kubernetes defaults)."""

    scale_up: HpaScalingRules = DEFAULT_SCALE_UP
    scale_down: HpaScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class HpaState:
    """The HPA controller's memory for one target.

    :param recommendations: (time, raw recommendation) within the longest stabilisation window.
    :param events: (time, signed replica change) within the longest policy period.
    :param last_replicas: replicas seen at the previous call (``None`` before the first).
    :param last_time_s: time of the previous call.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    events: tuple[tuple[float, int], ...] = ()
    last_replicas: int | None = None
    last_time_s: float = -math.inf


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
    window and the highest of the scale-down window (both after the cutoff), as close to ``current`` as they allow."""
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


def stabilize_legacy(raw: int, now_s: float, recommendations: tuple[tuple[float, int], ...], window_s: float) -> int:
    """``stabilizeRecommendation``: the highest recommendation not before ``now - window`` (and ``raw``)."""
    cutoff = now_s - window_s
    return max([raw] + [rec for t, rec in recommendations if not t < cutoff])


def convert_with_rules(current: int, desired: int, min_replicas: int, max_replicas: int) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules``: at most ``max(2 x current, 4)`` up per sync, then the bounds."""
    scale_up_limit_ = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    maximum, condition = (scale_up_limit_, "ScaleUpLimit") if max_replicas > scale_up_limit_ else (max_replicas, "TooManyReplicas")
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum:
        return maximum, condition
    return desired, "DesiredWithinRange"


@dataclass(frozen=True)
class HpaMetric:
    """One entry of ``spec.metrics``: a per-pod metric (a key of :data:`METRICS`) and its ``AverageValue`` target."""

    metric: str
    target: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown HPA metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if not self.target > 0:
            raise ValueError(f"HPA target must be positive, got {self.target}")


@dataclass(frozen=True)
class HpaPolicy:
    """HPA v2 on per-pod metrics with an average target per pod.

    :param metric: per-pod metric name, e.g. ``requests_per_replica``.
    :param target: its target average value per pod (``AverageValue``).
    :param behavior: ``spec.behavior``; ``None`` (absent) takes the legacy path, as Kubernetes does.
    :param tolerance: ``--horizontal-pod-autoscaler-tolerance`` (0.1); ``behavior.scaleUp/scaleDown.tolerance`` override it.
    :param extra_metrics: more (metric, target) pairs; the largest proposal wins.
    :param downscale_stabilization_s: the legacy path's stabilisation window (300 s).
    """

    metric: str
    target: float
    behavior: HpaBehavior | None = None
    tolerance: float = DEFAULT_TOLERANCE
    extra_metrics: tuple[tuple[str, float], ...] = ()
    downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S
    name: str = "hpa"

    #: Its behavior's scale-down window (or the legacy path's 300 s) is the HPA's own.
    stabilizes_scale_down: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for metric, target in self.metrics_:
            HpaMetric(metric, target)
        if self.tolerance < 0:
            raise ValueError(f"HPA tolerance must be >= 0, got {self.tolerance}")
        if self.downscale_stabilization_s < 0:
            raise ValueError(f"downscale_stabilization_s must be >= 0, got {self.downscale_stabilization_s}")

    @property
    def metrics_(self) -> tuple[tuple[str, float], ...]:
        return ((self.metric, self.target),) + tuple(self.extra_metrics)

    @property
    def required_signals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for m, _ in self.metrics_ for k in METRIC_SIGNALS[m]))

    #: On-demand signals read for the per-pod view (see :mod:`controller.load`).
    reads: tuple[str, ...] = (sig.REPLICAS_REPORTING, sig.REPLICAS_PENDING)

    @property
    def tolerances(self) -> Tolerances:
        """``tolerancesForHpa``: the flag's value, overridden per direction by ``behavior``."""
        up = down = self.tolerance
        if self.behavior is not None:
            down = self.tolerance if self.behavior.scale_down.tolerance is None else self.behavior.scale_down.tolerance
            up = self.tolerance if self.behavior.scale_up.tolerance is None else self.behavior.scale_up.tolerance
        return Tolerances(down, up)

    def initial_state(self) -> HpaState:
        return HpaState()

    def dump_state(self, state: HpaState) -> dict[str, int]:
        """The highest recommendation of the (longest) stabilisation window, for a restart."""
        keep, _ = self._history()
        recent = [r for t, r in state.recommendations if t >= state.last_time_s - keep]
        return {"hold": max(recent)} if recent else {}

    def load_state(self, data: Mapping[str, object], now_s: float, current: int) -> HpaState:
        """``recordInitialRecommendation`` after a restart, at least the stored hold."""
        hold = data.get("hold")
        rec = max(current, int(hold)) if isinstance(hold, (int, float)) and math.isfinite(hold) else current
        return HpaState(((now_s, rec),), (), current, now_s)

    def _history(self) -> tuple[float, float]:
        """How long recommendations and scale events are kept (s)."""
        if self.behavior is None:
            return self.downscale_stabilization_s, 0.0
        periods = [p.period_s for p in self.behavior.scale_up.policies + self.behavior.scale_down.policies]
        return (max(self.behavior.scale_up.stabilization_window_s, self.behavior.scale_down.stabilization_window_s),
                max(periods, default=0.0))

    def metric_proposal(self, snapshot: Mapping[str, float], metric: str, target: float, current: int) -> tuple[int | None, str]:
        """One metric's replicas (``None``: invalid) and a reason line."""
        groups = load.pod_groups(snapshot)
        value = metric_total(snapshot, metric, groups.ready)
        if groups.ready < 1 or not math.isfinite(value):
            return None, f"FailedGetPodsMetric: {metric} unavailable (pods with a sample: {groups.ready})"
        replicas, usage = calc_plain_metric_replicas(milli(value), milli(target), groups.ready, current, self.tolerances,
                                                     groups.unready, groups.missing)
        return replicas, (f"{metric}={usage / 1000:.4g} target={target:g} ready={groups.ready} unready={groups.unready} "
                          f"missing={groups.missing} -> {replicas}")

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: HpaState) -> tuple[Proposal, HpaState]:
        now, current = ctx.now_s, ctx.current_replicas
        keep_recs, keep_events = self._history()
        events = state.events
        if self.behavior is not None and state.last_replicas is not None and state.last_replicas != current:
            events = events + ((state.last_time_s, current - state.last_replicas),)
        events = tuple(e for e in events if e[0] > now - keep_events)
        recommendations = tuple(r for r in state.recommendations if r[0] >= now - keep_recs)
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

        proposals = [self.metric_proposal(snapshot, m, t, current) for m, t in self.metrics_]
        reasons = [why for _, why in proposals]
        valid = [r for r, _ in proposals if r is not None]
        if not valid or (len(valid) < len(proposals) and max(valid) < current):
            # computeReplicasForMetrics: all metrics invalid, or some invalid and the others would scale down
            return done(Proposal(None, tuple(reasons)))
        raw = max(valid)

        if self.behavior is None:
            stabilized = stabilize_legacy(raw, now, recommendations, self.downscale_stabilization_s)
            recommendations = recommendations + ((now, raw),)
            if stabilized != raw:
                reasons.append(f"ScaleDownStabilized: {raw} -> {stabilized}")
            desired, why = convert_with_rules(current, stabilized, ctx.min_replicas, ctx.max_replicas)
        else:
            stabilized = stabilize(raw, current, now, recommendations, self.behavior)
            recommendations = recommendations + ((now, raw),)
            if stabilized != raw:
                reasons.append(f"{'ScaleUpStabilized' if stabilized < raw else 'ScaleDownStabilized'}: {raw} -> {stabilized}")
            desired, why = rate_limit(stabilized, current, now, events, self.behavior, ctx.min_replicas, ctx.max_replicas)
        if desired != stabilized:
            reasons.append(f"{why}: {stabilized} -> {desired}")
        return done(Proposal(desired, tuple(reasons)), recommendations)
