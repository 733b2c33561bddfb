"""The HPA policy against the worked examples of the Kubernetes documentation.

Sources: "Horizontal Pod Autoscaling" (algorithm details, behavior examples) and
kubernetes/kubernetes pkg/controller/podautoscaler (replica_calculator.go, horizontal.go).
Metric values are written in the documentation's milli-units where it uses them.
"""

from __future__ import annotations

import math

import pytest

from controller.load import PodGroups, group_pods, pod_groups
from controller.policies.base import PolicyContext
from controller.policies.hpa import (
    DEFAULT_SCALE_DOWN,
    HpaBehavior,
    HpaPolicy,
    HpaScalingPolicy,
    HpaScalingRules,
    HpaState,
    Tolerances,
    calc_plain_metric_replicas,
    convert_with_rules,
    metric_replicas,
    milli,
    rate_limit,
    scale_down_limit,
    scale_up_limit,
)


def ctx(now: float = 0.0, current: int = 1, lo: int = 1, hi: int = 100) -> PolicyContext:
    return PolicyContext(now_s=now, current_replicas=current, min_replicas=lo, max_replicas=hi)


def load(total_requests: float, ready: int, starting: int = 0) -> dict[str, float]:
    """A snapshot with ``total_requests`` running over ``ready`` replicas."""
    return {"requests_running": float(total_requests), "requests_waiting": 0.0, "replicas_desired": float(ready + starting),
            "replicas_ready": float(ready), "replicas_starting": float(starting)}


def run(policy: HpaPolicy, steps: list[tuple[float, int, dict[str, float]]], lo: int = 1, hi: int = 100) -> list[int | None]:
    """Decide at each (time, current replicas, snapshot); returns the proposals."""
    state, out = policy.initial_state(), []
    for now, current, snapshot in steps:
        proposal, state = policy.decide(snapshot, ctx(now, current, lo, hi), state)
        out.append(proposal.replicas)
    return out


def follow(policy: HpaPolicy, times: list[float], start: int, snapshot_of) -> list[int | None]:
    """Decide at each time; the replicas then follow each proposal (as if it were applied)."""
    state, current, out = policy.initial_state(), start, []
    for now in times:
        proposal, state = policy.decide(snapshot_of(current), ctx(now, current), state)
        out.append(proposal.replicas)
        current = proposal.replicas if proposal.valid else current
    return out


# ------------------------------------------------------------- the ratio rule
def test_doubling_and_halving_from_the_docs():
    # desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]
    # 200m current vs 100m desired: 200.0 / 100.0 == 2.0 -> the replicas double.
    assert metric_replicas(200, 100, ready=1, missing=0, current=1) == 2
    assert metric_replicas(200, 100, ready=3, missing=0, current=3) == 6
    # 50m vs 100m: 50.0 / 100.0 == 0.5 -> the replicas halve.
    assert metric_replicas(50, 100, ready=4, missing=0, current=4) == 2


def test_tolerance_skips_changes_close_to_one():
    # Default tolerance 0.1: |1 - 1.05| <= 0.1 and |1 - 0.92| <= 0.1 -> no change.
    assert metric_replicas(105, 100, ready=5, missing=0, current=5) == 5
    assert metric_replicas(92, 100, ready=5, missing=0, current=5) == 5
    # 1.15 is outside: ceil(1.15 * 5) = ceil(5.75) = 6; 0.85: ceil(0.85 * 5) = ceil(4.25) = 5.
    assert metric_replicas(115, 100, ready=5, missing=0, current=5) == 6
    assert metric_replicas(70, 100, ready=5, missing=0, current=5) == 4  # ceil(0.7 * 5) = ceil(3.5) = 4
    # A wider tolerance swallows 1.15 too.
    assert metric_replicas(115, 100, ready=5, missing=0, current=5, tolerance=0.2) == 5


def test_not_ready_pods_count_as_zero_only_when_scaling_up():
    # 2 ready pods at 160 (target 100) and 1 not ready, 3 replicas: the ready ratio 1.6 says
    # scale up, so the not-ready pod counts as 0: 320 / (100 * 3) = 1.067, within tolerance -> keep 3.
    # (Ignoring it would give ceil(1.6 * 2) = 4.)
    assert metric_replicas(160, 100, ready=2, missing=0, current=3, unready=1) == 3
    assert metric_replicas(160, 100, ready=2, missing=0, current=3) == 4
    # 2 ready at 120 and 2 not ready, 4 replicas: ratio 1.2 -> 240 / 400 = 0.6 flips the direction: keep 4.
    # (Ignoring them would even scale *down*: ceil(1.2 * 2) = 3.)
    assert metric_replicas(120, 100, ready=2, missing=0, current=4, unready=2) == 4
    # 3 ready at 300 and 1 not ready: 900 / 400 = 2.25 -> ceil(2.25 * 4) = 9.
    assert metric_replicas(300, 100, ready=3, missing=0, current=4, unready=1) == 9
    # Scaling down, not-ready pods are simply left out: 2 ready at 50 -> ceil(0.5 * 2) = 1.
    assert metric_replicas(50, 100, ready=2, missing=0, current=4, unready=2) == 1


def test_missing_metrics_count_as_target_on_scale_down_and_zero_on_scale_up():
    # 2 ready at 50 and 1 missing (target 100): scale-down, so the missing pod is at target:
    # (50 + 50 + 100) / 300 = 0.667 -> ceil(0.667 * 3) = 2 (not ceil(0.5 * 2) = 1).
    assert metric_replicas(50, 100, ready=2, missing=1, current=3) == 2
    # 2 ready at 300 and 1 missing: scale-up, so the missing pod is at 0: 600 / 300 = 2.0 -> 6.
    assert metric_replicas(300, 100, ready=2, missing=1, current=3) == 6
    # 3 ready at 80 and 1 missing: (240 + 100) / 400 = 0.85 -> ceil(3.4) = 4 = current.
    assert metric_replicas(80, 100, ready=3, missing=1, current=4) == 4
    # 1 ready at 10 and 3 missing, 2 replicas wanted: (10 + 300) / 400 = 0.775, yet ceil(0.775 * 4) = 4
    # would scale *up* on a scale-down ratio: keep the current 2.
    assert metric_replicas(10, 100, ready=1, missing=3, current=2) == 2


def test_no_ready_pod_is_an_error():
    with pytest.raises(ValueError, match="did not receive metrics for targeted pods"):
        metric_replicas(10, 100, ready=0, missing=0, current=1)


def test_policy_reads_the_metric_and_starting_replicas_from_the_snapshot():
    hpa = HpaPolicy("requests_per_replica", 100.0)
    # 2 ready replicas with 240 requests (120 each) and 2 starting: the direction flips -> keep 4.
    proposal, _ = hpa.decide(load(240, ready=2, starting=2), ctx(0, 4), hpa.initial_state())
    assert proposal.replicas == 4
    # Without the starting replicas the same load asks for ceil(1.2 * 2) = 3... but the initial
    # recommendation (4, recorded at the first call as the HPA does) stabilises the scale-down.
    proposal, _ = hpa.decide(load(240, ready=2), ctx(0, 4), hpa.initial_state())
    assert proposal.replicas == 4 and any("ScaleDownStabilized" in r for r in proposal.reasons)


@pytest.mark.parametrize(("metric", "snapshot", "target", "expected"), [
    # (60 + 20) / 4 = 20 per replica vs 10 -> ceil(2.0 * 4) = 8
    ("requests_per_replica", {"requests_running": 60, "requests_waiting": 20}, 10, 8),
    ("running_per_replica", {"requests_running": 60}, 10, 6),  # 15 vs 10 -> ceil(1.5 * 4) = 6
    ("waiting_per_replica", {"requests_waiting": 20}, 2, 10),  # 5 vs 2 -> ceil(2.5 * 4) = 10
    ("tokens_per_replica", {"prompt_token_rate": 3000, "generation_token_rate": 1000}, 500, 8),  # 1000 vs 500
    ("gpu_utilization", {"gpu_utilization": 90}, 60, 6),  # 1.5 -> 6
    ("kv_cache_usage", {"kv_cache_usage": 0.9}, 0.45, 8),  # 2.0 -> 8
])
def test_each_metric(metric, snapshot, target, expected):
    hpa = HpaPolicy(metric, target, HpaBehavior(scale_up=HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 900, 15),))))
    proposal, _ = hpa.decide({**snapshot, "replicas_ready": 4.0}, ctx(0, 4), hpa.initial_state())
    assert proposal.replicas == expected
    assert hpa.required_signals and all(name in snapshot for name in hpa.required_signals)


def test_missing_metric_or_no_ready_replica_is_an_invalid_proposal():
    hpa = HpaPolicy("gpu_utilization", 60)
    proposal, state = hpa.decide({"replicas_ready": 2.0}, ctx(0, 2), hpa.initial_state())
    assert not proposal.valid and state.recommendations == ((0.0, 2),)  # only the initial one
    proposal, _ = hpa.decide({"gpu_utilization": math.nan, "replicas_ready": 2.0}, ctx(0, 2), hpa.initial_state())
    assert not proposal.valid
    proposal, _ = hpa.decide({"gpu_utilization": 90.0, "replicas_ready": 0.0}, ctx(0, 2), hpa.initial_state())
    assert not proposal.valid


def test_out_of_range_and_zero_replicas_follow_reconcile_autoscaler():
    hpa = HpaPolicy("requests_per_replica", 10)
    # Above maxReplicas: straight to max, whatever the metric (no rate limit applies).
    assert hpa.decide(load(0, 20), ctx(0, 20, 1, 8), hpa.initial_state())[0].replicas == 8
    # Below minReplicas: straight to min.
    assert hpa.decide(load(1000, 1), ctx(0, 1, 3, 8), hpa.initial_state())[0].replicas == 3
    # Zero replicas with minReplicas 1: scaling is disabled.
    proposal, _ = hpa.decide(load(1000, 0), ctx(0, 0, 1, 8), hpa.initial_state())
    assert proposal.replicas == 0 and "ScalingDisabled" in proposal.reasons[0]


# ------------------------------------------------------------ behavior rules
def test_default_scale_up_is_the_larger_of_100_percent_and_4_pods_per_15_s():
    rules = HpaBehavior().scale_up
    assert scale_up_limit(10, (), 0.0, rules) == 20  # 100% of 10 = +10 beats +4
    assert scale_up_limit(2, (), 0.0, rules) == 6  # +4 beats 100% of 2 = +2
    # 10 -> 20 at t=0; 10 s later the period (15 s) still starts at 10: the limit stays 20.
    assert scale_up_limit(20, ((0.0, 10),), 10.0, rules) == 20
    # At t=15 the event has left the period (only events *after* now - 15 count): 40.
    assert scale_up_limit(20, ((0.0, 10),), 15.0, rules) == 40


def test_default_scale_up_in_the_policy():
    hpa = HpaPolicy("requests_per_replica", 1.0, HpaBehavior())
    # 20 requests on 2 ready replicas (target 1 each); new replicas are still starting, counted as 0:
    # the raw recommendation is 20 / 1 = 20 whatever the replica count.
    # t=0, 2 replicas: limit max(ceil(2 * 2), 2 + 4) = 6 -> 6.
    # t=10, 6 replicas: +4 ten seconds ago, the 15 s period started at 2 -> still 6.
    # t=15: that event has left the period -> max(12, 10) = 12.
    # t=30: max(24, 16) = 24 >= 20 -> the raw 20.
    proposals = follow(hpa, [0, 10, 15, 30], 2, lambda current: load(20, 2, starting=current - 2))
    assert proposals == [6, 6, 12, 20]


def test_select_policy_min_takes_the_smaller_change():
    rules = HpaScalingRules(0, "Min", (HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15)))
    assert scale_up_limit(10, (), 0.0, rules) == 14  # min(20, 14)
    assert scale_up_limit(2, (), 0.0, rules) == 4  # min(4, 6)
    down = HpaScalingRules(0, "Min", (HpaScalingPolicy("Percent", 50, 60), HpaScalingPolicy("Pods", 2, 60)))
    assert scale_down_limit(10, (), 0.0, down) == 8  # the smaller drop: max(5, 8)


def test_select_policy_disabled_forbids_the_direction():
    disabled = HpaBehavior(scale_down=HpaScalingRules(0, "Disabled", DEFAULT_SCALE_DOWN.policies))
    hpa = HpaPolicy("requests_per_replica", 10, disabled)
    # 10 replicas with 10 requests in all: raw 1, but scale-down is disabled.
    assert run(hpa, [(0, 10, load(10, 10)), (600, 10, load(10, 10))]) == [10, 10]
    assert scale_up_limit(3, (), 0.0, HpaScalingRules(0, "Disabled", DEFAULT_SCALE_DOWN.policies)) == 3


def test_scale_down_of_at_most_4_pods_or_10_percent_per_minute_from_the_docs():
    # behavior.scaleDown.policies: [{type: Pods, value: 4, periodSeconds: 60},
    #                               {type: Percent, value: 10, periodSeconds: 60}], selectPolicy Max.
    # From 80 replicas towards 10: 10% of 80 = 8 beats 4 -> 72. At 72: int(72 * 0.9) = int(64.8) = 64,
    # a drop of 8 ("7.2 rounded up to 8"). Below 40 replicas 4 pods is the bigger drop.
    rules = HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 4, 60), HpaScalingPolicy("Percent", 10, 60)))
    hpa = HpaPolicy("requests_per_replica", 1.0, HpaBehavior(scale_down=rules))
    # One decision a minute; 10 requests in all at target 1 each: the raw recommendation is 10.
    seen = follow(hpa, [60.0 * minute for minute in range(16)], 80, lambda current: load(10, current))
    # 80*0.9=72 | 72*0.9=64.8 | 64*0.9=57.6 | 57*0.9=51.3 | 51*0.9=45.9 | 45*0.9=40.5 | 40-4=36 (=40*0.9)
    # 36-4=32 | 28 | 28-4=24 (vs 25.2) | 20 | 16 | 12 | 12-4=8 -> the raw 10 | 10 | 10
    assert seen == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10, 10, 10]


def test_scale_down_of_10_percent_per_minute_counts_the_period_from_its_start():
    # scaleDown: {type: Percent, value: 10, periodSeconds: 60}: 80 -> 72 at t=0; at t=30 the period
    # started at 80 (8 removed since), so the limit is int(80 * 0.9) = 72: no further drop.
    rules = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 10, 60),))
    assert scale_down_limit(80, (), 0.0, rules) == 72
    assert scale_down_limit(72, ((0.0, -8),), 30.0, rules) == 72
    assert scale_down_limit(72, ((0.0, -8),), 60.0, rules) == 64  # the event has left the period
    hpa = HpaPolicy("requests_per_replica", 1.0, HpaBehavior(scale_down=rules))
    assert run(hpa, [(0, 80, load(10, 80)), (30, 72, load(10, 72)), (60, 72, load(10, 72))]) == [72, 72, 64]


def test_default_scale_down_stabilization_window_is_300_s():
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior())
    # 10 replicas at target (100 requests), then the load falls to 40 in all: raw ceil(0.4 * 10) = 4.
    steps = [(0, 10, load(100, 10))] + [(t, 10, load(40, 10)) for t in range(15, 301, 15)] + [(315, 10, load(40, 10))]
    proposals = run(hpa, steps)
    # Up to t=285 the recommendation 10 of t=0 is in the window (now - 300, now].
    assert proposals[:-2] == [10] * (len(steps) - 2)
    # From t=300 it is not; the default 100% per 15 s allows 10 -> 4 at once.
    assert proposals[-2:] == [4, 4]


def test_short_scale_down_stabilization_window_from_the_docs():
    # behavior.scaleDown.stabilizationWindowSeconds: 60 -> a dip is followed after 60 s.
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior(scale_down=HpaScalingRules(60, "Max", DEFAULT_SCALE_DOWN.policies)))
    proposals = run(hpa, [(0, 10, load(100, 10)), (30, 10, load(40, 10)), (59, 10, load(40, 10)), (60, 10, load(40, 10))])
    assert proposals == [10, 10, 10, 4]


def test_scale_up_stabilization_window_takes_the_lowest_recent_recommendation():
    # behavior.scaleUp.stabilizationWindowSeconds: 30: a spike must last 30 s before it is followed.
    # t=0: initial recommendation 4 and raw 8 -> min 4. t=15: still 4 in the window. t=30: only 8s -> 8.
    up = HpaScalingRules(30, "Max", HpaBehavior().scale_up.policies)
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior(scale_up=up))
    assert run(hpa, [(0, 4, load(80, 4)), (15, 4, load(80, 4)), (30, 4, load(80, 4))]) == [4, 4, 8]


def test_state_is_immutable_and_pruned():
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior())
    state = hpa.initial_state()
    _, s1 = hpa.decide(load(100, 2), ctx(0, 2), state)
    _, s2 = hpa.decide(load(100, 2), ctx(10, 6), s1)
    assert state == HpaState() and s1.events == () and s2.events == ((0.0, 4),)
    with pytest.raises(AttributeError):
        s2.events = ()  # type: ignore[misc]
    _, s3 = hpa.decide(load(100, 6), ctx(1000, 6), s2)
    assert s3.events == () and [t for t, _ in s3.recommendations] == [1000]


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown HPA metric"):
        HpaPolicy("vibes", 1)
    with pytest.raises(ValueError, match="target must be positive"):
        HpaPolicy("gpu_utilization", 0)
    with pytest.raises(ValueError, match="Pods or Percent"):
        HpaScalingPolicy("Replicas", 1, 15)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="select_policy"):
        HpaScalingRules(0, "Sometimes")  # type: ignore[arg-type]


# ------------------------------------------- kubernetes/kubernetes, ported cases
# replica_calculator_test.go, the per-pod ("podMetric", GetMetricReplicas) cases: levels are the pods'
# milli-values, one per pod with a sample; the other pods of currentReplicas are missing.
@pytest.mark.parametrize(("name", "current", "levels", "target", "tolerances", "expected", "usage"), [
    ("TestReplicaCalcScaleUpCM", 3, [20000, 10000, 30000], 15000, None, 4, 20000),
    # Not Ready but Running with a sample: ready for a non-CPU metric. 30000 / 15000 = 2 -> 6.
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", 3, [50000, 10000, 30000], 15000, None, 6, 30000),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", 3, [50000, 15000, 30000], 15000, None, 7, 31666),
    ("TestReplicaCalcScaleDownCM", 5, [12000] * 5, 20000, None, 3, 12000),
    ("TestReplicaCalcToleranceCM", 3, [20000, 21000, 21000], 20000, None, 3, 20666),
    ("TestReplicaCalcConfigurableToleranceCM", 3, [20000, 21000, 21000], 20000, (0.1, 0.01), 4, 20666),
    # 2 of 5 pods missing: at target on a scale-down, 0 on a scale-up; the ratio is 1.0 -> no change.
    ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", 5, [20000, 19000, 21000], 20000, None, 5, 20000),
    # 3 running pods during a rolling update with max surge, 2 with a sample: (20000 + 17000) // 3 / 17000
    # = 0.7254 -> ceil(2.18) = 3 > 2 current on a scale-down ratio: keep 2.
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", 2, [10000, 10000], 17000, None, 2, 10000),
])
def test_kubernetes_replica_calculator_cases(name, current, levels, target, tolerances, expected, usage):
    pods = current if name != "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM" else 3
    tol = Tolerances(*tolerances) if tolerances else Tolerances()
    replicas, got_usage = calc_plain_metric_replicas(sum(levels), target, len(levels), current, tol, missing=pods - len(levels))
    assert (replicas, got_usage) == (expected, usage), name


@pytest.mark.parametrize(("name", "pods", "ready", "unready", "missing"), [
    ("void", [], 0, 0, 0),
    ("count in a ready pod - memory", [("Succeeded", False, True)], 1, 0, 0),
    ("a missing pod", [("Succeeded", False, False)], 0, 0, 1),
    ("pending pods are unreadied", [("Pending", False, False)], 0, 1, 0),
    ("ignore pods with deletion timestamps", [("Pending", True, True)], 0, 0, 0),
    ("ignore pods in a failed state", [("Failed", False, True)], 0, 0, 0),
])
def test_kubernetes_group_pods_cases(name, pods, ready, unready, missing):
    """TestGroupPods, the cases that hold for a metric other than CPU (readiness plays no part there)."""
    assert group_pods(pods) == PodGroups(ready, unready, missing), name


@pytest.mark.parametrize(("current", "desired", "lo", "hi", "expected", "condition"), [
    (5, 7, 3, 8, 7, "DesiredWithinRange"),
    (3, 1, 2, 8, 2, "TooFewReplicas"),
    (20, 1000, 1, 10, 10, "TooManyReplicas"),
    (3, 1000, 1, 2000, 6, "ScaleUpLimit"),  # calculateScaleUpLimit(3) = max(2 x 3, 4)
])
def test_kubernetes_convert_desired_replicas_with_rules(current, desired, lo, hi, expected, condition):
    """TestConvertDesiredReplicasWithRules (horizontal_test.go). Its case "1 is minLimit because
    hpaMinReplicas < 1" belongs to an older release; today's code takes minReplicas as it is."""
    assert convert_with_rules(current, desired, lo, hi) == (expected, condition)


# ------------------------------------------------------------- the legacy path
def test_without_behavior_scale_up_is_at_most_double_or_four():
    """The issue's numbers: at 10x the target, 1 replica goes to 4 and 2 go to 4 (kube's legacy
    path), not 5 and 6 (the behavior defaults)."""
    hpa = HpaPolicy("requests_per_replica", 1.0)
    assert hpa.decide(load(10, 1), ctx(0, 1), hpa.initial_state())[0].replicas == 4
    assert hpa.decide(load(20, 2), ctx(0, 2), hpa.initial_state())[0].replicas == 4
    # 8 replicas: max(16, 4) = 16.
    assert hpa.decide(load(800, 8), ctx(0, 8), hpa.initial_state())[0].replicas == 16
    with_defaults = HpaPolicy("requests_per_replica", 1.0, HpaBehavior())
    assert with_defaults.decide(load(10, 1), ctx(0, 1), with_defaults.initial_state())[0].replicas == 5


def test_without_behavior_scale_down_is_unlimited_after_the_window_cutoff_included():
    """stabilizeRecommendation keeps recommendations at the cutoff (only older ones are dropped);
    then no rate limit: 10 -> 4 at once."""
    hpa = HpaPolicy("requests_per_replica", 10.0)
    steps = [(0, 10, load(100, 10))] + [(t, 10, load(40, 10)) for t in range(15, 316, 15)]
    proposals = run(hpa, steps)
    assert proposals[:-1] == [10] * (len(steps) - 1)  # t=300: the t=0 recommendation is at the cutoff
    assert proposals[-1] == 4


def test_several_metrics_take_the_largest_and_refuse_a_scale_down_on_an_invalid_one():
    """computeReplicasForMetrics: max over metrics; an invalid metric allows a scale-up only."""
    hpa = HpaPolicy("requests_per_replica", 10.0, extra_metrics=(("kv_cache_usage", 0.5),))
    both = {**load(40, 4), "kv_cache_usage": 0.75}  # 10 per pod -> 4; 0.75 / 0.5 -> 6
    assert hpa.decide(both, ctx(0, 4), hpa.initial_state())[0].replicas == 6
    up = load(80, 4)  # kv missing, requests say 8: a scale-up goes ahead
    assert hpa.decide(up, ctx(0, 4), hpa.initial_state())[0].replicas == 8
    down = load(10, 4)  # requests say 1: refused
    assert not hpa.decide(down, ctx(0, 4), hpa.initial_state())[0].valid
    assert set(hpa.required_signals) == {"requests_running", "requests_waiting", "kv_cache_usage"}


def test_per_direction_tolerances_from_behavior():
    """behavior.scaleUp.tolerance / scaleDown.tolerance override the flag's 0.1 (HPAConfigurableTolerance)."""
    up = HpaScalingRules(0, "Max", HpaBehavior().scale_up.policies, tolerance=0.01)
    hpa = HpaPolicy("requests_per_replica", 20.0, HpaBehavior(scale_up=up))
    assert hpa.tolerances == Tolerances(0.1, 0.01)
    # 62 requests on 3 pods: 20666 // 20000 = 1.033, outside 1%: ceil(3.1) = 4.
    assert hpa.decide(load(62, 3), ctx(0, 3), hpa.initial_state())[0].replicas == 4
    assert HpaPolicy("requests_per_replica", 20.0).decide(load(62, 3), ctx(0, 3), HpaState())[0].replicas == 3


def test_the_tolerance_boundary_is_inside():
    """isWithin: 1 - down <= ratio <= 1 + up, both ends included."""
    assert Tolerances(0.1, 0.1).within(1.1) and Tolerances(0.1, 0.1).within(0.9)
    assert not Tolerances(0.1, 0.1).within(1.1000001)
    # 33 requests on 3 pods at target 10: 11000 / 10000 = 1.1 exactly -> no change.
    assert metric_replicas(11, 10, ready=3, missing=0, current=3) == 3
    assert metric_replicas(9, 10, ready=3, missing=0, current=3) == 3


def test_pod_groups_from_the_snapshot():
    """Pending pods are unready, the other pods without a sample missing; draining pods are not counted."""
    snapshot = {"replicas_desired": 6.0, "replicas_ready": 3.0, "replicas_reporting": 3.0, "replicas_pending": 2.0}
    assert pod_groups(snapshot) == PodGroups(3, 2, 1)
    # Without the Pending count, every pod without a sample is unready (left out of a scale-down).
    assert pod_groups({"replicas_desired": 6.0, "replicas_ready": 3.0}) == PodGroups(3, 3, 0)
    # 3 with a sample at 5 each (target 10) and 1 loading its model: (15000 + 10000) // 4 / 10000
    # = 0.625 -> ceil(2.5) = 3 (not ceil(0.5 x 3) = 2).
    hpa = HpaPolicy("requests_per_replica", 10.0)
    snapshot = {**load(15, 3), "replicas_desired": 4.0, "replicas_reporting": 3.0, "replicas_pending": 0.0}
    assert hpa.metric_proposal(snapshot, "requests_per_replica", 10.0, 4)[0] == 3
    snapshot["replicas_pending"] = 1.0  # the fourth pod is Pending instead: left out -> ceil(0.5 x 3) = 2
    assert hpa.metric_proposal(snapshot, "requests_per_replica", 10.0, 4)[0] == 2


def test_integer_periods_and_non_empty_policies():
    with pytest.raises(ValueError, match="integers"):
        HpaScalingPolicy("Pods", 1, 15.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one policy"):
        HpaScalingRules(0, "Max", ())
    with pytest.raises(ValueError, match="1800"):
        HpaScalingPolicy("Pods", 1, 1801)


def test_percent_policies_round_up_for_growth_and_down_for_shrinking():
    """calculateScaleUpLimitWithScalingRules takes ceil(start x (1 + p)); ...WithBehaviors int(start x (1 - p))."""
    up = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 50, 60),))
    assert scale_up_limit(3, (), 0.0, up) == 5  # ceil(4.5)
    down = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 50, 60),))
    assert scale_down_limit(3, (), 0.0, down) == 1  # int(1.5)
    # Events inside the period move its start: 3 replicas now, +1 twenty seconds ago -> start 2 -> ceil(3.0) = 3.
    assert scale_up_limit(3, ((-20.0, 1),), 0.0, up) == 3
    # An event exactly one period old has left it (only events after now - period count).
    assert scale_up_limit(3, ((-60.0, 1),), 0.0, up) == 5


# ------------------------------------------------------------ exact edges
def test_rate_limit_branches_and_their_reasons():
    b = HpaBehavior(HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 2, 60),)), HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 2, 60),)))
    assert rate_limit(9, 4, 0.0, (), b, 1, 10) == (6, "ScaleUpLimit")
    assert rate_limit(6, 4, 0.0, (), b, 1, 10) == (6, "DesiredWithinRange")  # exactly the limit
    assert rate_limit(9, 4, 0.0, (), b, 1, 6) == (6, "TooManyReplicas")  # max equals the limit
    assert rate_limit(9, 4, 0.0, (), b, 1, 5) == (5, "TooManyReplicas")
    assert rate_limit(1, 6, 0.0, (), b, 1, 10) == (4, "ScaleDownLimit")
    assert rate_limit(4, 6, 0.0, (), b, 1, 10) == (4, "DesiredWithinRange")
    assert rate_limit(1, 6, 0.0, (), b, 4, 10) == (4, "TooFewReplicas")  # min equals the limit
    assert rate_limit(1, 6, 0.0, (), b, 5, 10) == (5, "TooFewReplicas")
    assert rate_limit(6, 6, 0.0, (), b, 1, 10) == (6, "DesiredWithinRange")
    # Limits below current (events used the period up) do not scale the other way.
    used = ((-10.0, 2),)
    assert rate_limit(9, 6, 0.0, used, b, 1, 10) == (6, "ScaleUpLimit")


def test_convert_with_rules_edges():
    assert convert_with_rules(3, 2, 2, 8) == (2, "DesiredWithinRange")  # exactly min
    assert convert_with_rules(3, 6, 1, 10) == (6, "DesiredWithinRange")  # exactly max(2 x 3, 4)
    assert convert_with_rules(3, 9, 1, 6) == (6, "TooManyReplicas")  # maxReplicas equals the scale-up limit
    assert convert_with_rules(1, 9, 1, 10) == (4, "ScaleUpLimit")


def test_calc_plain_metric_replicas_edges():
    t = 10_000
    # Unready pods at exactly the target do not rebalance: the ratio is 1 -> no change.
    assert calc_plain_metric_replicas(2 * t, t, 2, 4, unready=2) == (4, t)
    # Missing pods on a scale-up (1.5) count as 0: (3 t) // 4 / t = 0.75 flips the direction -> keep 4.
    assert calc_plain_metric_replicas(3 * t, t, 2, 4, missing=2) == (4, 15_000)
    # The average is an integer division in milli-units: 3001 // 3 = 1000 is exactly the target.
    assert calc_plain_metric_replicas(3001, 1000, 2, 3, Tolerances(0.0, 0.0), unready=1) == (3, 1500)
    # Scale-up ratio but fewer replicas than now (pods counted: 3; current 10) -> keep 10.
    assert calc_plain_metric_replicas(36_000, t, 2, 10, unready=1) == (10, 18_000)
    # No missing pods unless said so.
    assert calc_plain_metric_replicas(60_000, 15_000, 3, 3) == (4, 20_000)
    with pytest.raises(ValueError, match=r"^did not receive metrics for targeted pods \(pods might be unready\)$"):
        calc_plain_metric_replicas(1, 1, 0, 1)


def test_milli_rounds_up_but_ignores_float_noise():
    assert milli(1.0) == 1000 and milli(0.0004) == 1 and milli(0.015) == 15
    assert milli(1.0000000001) == 1000  # noise below a millionth of a milli-unit
    assert milli(1.0000011) == 1001


def test_percent_limits_use_a_hundred():
    up = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 100, 15),))
    assert scale_up_limit(101, (), 0.0, up) == 202
    down = HpaScalingRules(0, "Max", (HpaScalingPolicy("Percent", 50, 15),))
    assert scale_down_limit(101, (), 0.0, down) == 50  # int(50.5)


def test_scaling_policy_and_rules_bounds_and_messages():
    assert HpaScalingPolicy("Pods", 1, 1).value == 1 and HpaScalingPolicy("Percent", 1, 1800).period_s == 1800
    with pytest.raises(ValueError, match=r"^HPA scaling policy needs value > 0 and 0 < periodSeconds <= 1800, got 0, 15$"):
        HpaScalingPolicy("Pods", 0, 15)
    with pytest.raises(ValueError, match="got 1, 0$"):
        HpaScalingPolicy("Pods", 1, 0)
    with pytest.raises(ValueError, match=r"^HPA scaling policy type must be Pods or Percent, got 'Replicas'$"):
        HpaScalingPolicy("Replicas", 1, 15)  # type: ignore[arg-type]
    pods = (HpaScalingPolicy("Pods", 1, 15),)
    assert HpaScalingRules(3600, "Max", pods).stabilization_window_s == 3600 and HpaScalingRules(0, "Max", pods, 0.0).tolerance == 0.0
    with pytest.raises(ValueError, match=r"^stabilization_window_s must be an integer in \[0, 3600\], got 3601$"):
        HpaScalingRules(3601, "Max", pods)
    with pytest.raises(ValueError, match=r"^stabilization_window_s must be an integer in \[0, 3600\], got 1.5$"):
        HpaScalingRules(1.5, "Max", pods)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^stabilization_window_s must be an integer in \[0, 3600\], got -1$"):
        HpaScalingRules(-1, "Max", pods)
    with pytest.raises(ValueError, match=r"^HPA scaling rules need at least one policy$"):
        HpaScalingRules(0, "Max", ())
    with pytest.raises(ValueError, match=r"^HPA tolerance must be >= 0, got -0.1$"):
        HpaScalingRules(0, "Max", pods, -0.1)
    with pytest.raises(ValueError, match=r"^select_policy must be Max, Min or Disabled, got 'Sometimes'$"):
        HpaScalingRules(0, "Sometimes", pods)  # type: ignore[arg-type]


def test_hpa_policy_parameters_and_messages():
    assert HpaPolicy("requests_per_replica", 1, tolerance=0.0, downscale_stabilization_s=0.0).tolerance == 0.0
    with pytest.raises(ValueError, match=r"^HPA tolerance must be >= 0, got -1$"):
        HpaPolicy("requests_per_replica", 1, tolerance=-1)
    with pytest.raises(ValueError, match=r"^downscale_stabilization_s must be >= 0, got -1$"):
        HpaPolicy("requests_per_replica", 1, downscale_stabilization_s=-1)
    with pytest.raises(ValueError, match=r"^unknown HPA metric 'vibes'; choose one of requests_per_replica, running_per_replica, "):
        HpaPolicy("vibes", 1)
    with pytest.raises(ValueError, match=r"^HPA target must be positive, got 0$"):
        HpaPolicy("kv_cache_usage", 0)
    with pytest.raises(ValueError, match="unknown HPA metric 'x'"):
        HpaPolicy("kv_cache_usage", 1, extra_metrics=(("x", 1.0),))


def test_decide_explains_itself():
    legacy = HpaPolicy("requests_per_replica", 10.0)
    state = legacy.initial_state()
    first, state = legacy.decide(load(80, 8), ctx(0, 8), state)
    assert first.reasons == ("requests_per_replica=10 target=10 ready=8 unready=0 missing=0 -> 8",)
    held, state = legacy.decide(load(8, 8), ctx(15, 8), state)
    assert held.replicas == 8 and held.reasons[-1] == "ScaleDownStabilized: 1 -> 8"
    up, _ = legacy.decide(load(200, 2), ctx(0, 2), legacy.initial_state())
    assert up.replicas == 4 and up.reasons[-1] == "ScaleUpLimit: 20 -> 4"
    steady, _ = legacy.decide(load(20, 2), ctx(0, 2), legacy.initial_state())
    assert steady.reasons == ("requests_per_replica=10 target=10 ready=2 unready=0 missing=0 -> 2",)
    assert legacy.decide(load(0, 20), ctx(0, 20, 1, 8), HpaState())[0].reasons == ("current 20 above maxReplicas 8",)
    assert legacy.decide(load(0, 1), ctx(0, 1, 3, 8), HpaState())[0].reasons == ("current 1 below minReplicas 3",)
    assert legacy.decide(load(0, 0), ctx(0, 0, 1, 8), HpaState())[0].reasons == ("ScalingDisabled: the target has zero replicas",)
    none, _ = legacy.decide({"replicas_ready": 0.0}, ctx(0, 2), HpaState())
    assert none.reasons == ("FailedGetPodsMetric: requests_per_replica unavailable (pods with a sample: 0)",)
    up_window = HpaBehavior(scale_up=HpaScalingRules(30, "Max", HpaBehavior().scale_up.policies))
    slow = HpaPolicy("requests_per_replica", 10.0, up_window)
    proposal, _ = slow.decide(load(80, 4), ctx(0, 4), slow.initial_state())
    assert proposal.replicas == 4 and proposal.reasons[-1] == "ScaleUpStabilized: 8 -> 4"
    fast = HpaPolicy("requests_per_replica", 1.0, HpaBehavior())
    proposal, _ = fast.decide(load(20, 2), ctx(0, 2), fast.initial_state())
    assert proposal.reasons[-1] == "ScaleUpLimit: 20 -> 6"
    down = HpaPolicy("requests_per_replica", 10.0, HpaBehavior(scale_down=HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 1, 60),))))
    proposal, _ = down.decide(load(10, 8), ctx(0, 8), down.initial_state())  # a 0 s window: the initial recommendation is gone
    assert proposal.replicas == 7 and proposal.reasons[-1] == "ScaleDownLimit: 1 -> 7"


def test_an_invalid_metric_does_not_block_holding_or_scaling_up():
    hpa = HpaPolicy("requests_per_replica", 10.0, extra_metrics=(("kv_cache_usage", 0.5),))
    held, _ = hpa.decide(load(40, 4), ctx(0, 4), hpa.initial_state())  # requests say exactly 4, kv missing
    assert held.replicas == 4


def test_scale_down_events_count_in_their_period():
    """An observed scale-down (8 -> 4) is an event at the earlier call; 12 s later, inside a 15 s period,
    the period started at 8 and 100 % down leaves room to 0, yet with Pods 1 per 15 s only 8 - 1 = 7."""
    rules = HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 1, 15),))
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior(scale_down=rules))
    _, state = hpa.decide(load(10, 8), ctx(0, 8), HpaState(last_replicas=8, last_time_s=-100.0))
    proposal, state = hpa.decide(load(10, 4), ctx(12, 4), state)
    assert state.events == ((0.0, -4),) and proposal.replicas == 4  # the period's start is 8: 8 - 1 = 7 > 4 -> hold 4


def test_more_pods_than_replicas_during_a_surge():
    """3 pods with a sample at 1.2 x target and 1 missing, 3 replicas in the scale (a rolling update's
    surge pod): the missing pod counts as 0 on this scale-up, (36000 // 4) / 10000 = 0.9 flips the
    direction -> keep 3 (ignoring it, or not adding it to the pods, would give 4)."""
    assert calc_plain_metric_replicas(36_000, 10_000, 3, 3, missing=1) == (3, 12_000)


def test_tolerances_object_is_passed_through():
    assert metric_replicas(62 / 3, 20, ready=3, missing=0, current=3, tolerance=Tolerances(0.1, 0.01)) == 4


def test_behavior_scale_down_stabilized_reason():
    hpa = HpaPolicy("requests_per_replica", 10.0, HpaBehavior())
    _, state = hpa.decide(load(100, 10), ctx(0, 10), hpa.initial_state())
    proposal, _ = hpa.decide(load(40, 10), ctx(15, 10), state)
    assert proposal.replicas == 10 and proposal.reasons[-1] == "ScaleDownStabilized: 4 -> 10"


def test_dump_state_keeps_the_recommendation_at_the_legacy_cutoff():
    hpa = HpaPolicy("requests_per_replica", 10.0)
    assert hpa.dump_state(HpaState(((0.0, 9), (300.0, 2)), (), 2, 300.0)) == {"hold": 9}
    assert hpa.dump_state(HpaState(((0.0, 9), (301.0, 2)), (), 2, 301.0)) == {"hold": 2}
    assert hpa.dump_state(HpaState()) == {}
