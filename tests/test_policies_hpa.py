"""The HPA policy against the worked examples of the Kubernetes documentation.

Sources: "Horizontal Pod Autoscaling" (algorithm details, behavior examples) and
kubernetes/kubernetes pkg/controller/podautoscaler (replica_calculator.go, horizontal.go).
Metric values are written in the documentation's milli-units where it uses them.
"""

from __future__ import annotations

import math

import pytest

from controller.policies.base import PolicyContext
from controller.policies.hpa import (
    DEFAULT_SCALE_DOWN,
    HpaBehavior,
    HpaPolicy,
    HpaScalingPolicy,
    HpaScalingRules,
    HpaState,
    metric_replicas,
    scale_down_limit,
    scale_up_limit,
)


def ctx(now: float = 0.0, current: int = 1, lo: int = 1, hi: int = 100) -> PolicyContext:
    return PolicyContext(now_s=now, current_replicas=current, min_replicas=lo, max_replicas=hi)


def load(total_requests: float, ready: int, starting: int = 0) -> dict[str, float]:
    """A snapshot with ``total_requests`` running over ``ready`` replicas."""
    return {"requests_running": float(total_requests), "requests_waiting": 0.0,
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
    with pytest.raises(ValueError, match="at least one pod"):
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
    hpa = HpaPolicy("requests_per_replica", 1.0)
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
    hpa = HpaPolicy("requests_per_replica", 10.0)
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
    hpa = HpaPolicy("requests_per_replica", 10.0)
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
