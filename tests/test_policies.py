"""Policies against worked examples: the Kubernetes HPA documentation, Knative's KPA, threshold, fixed, registry."""

from __future__ import annotations

import pytest

from controller.policies.base import PolicyContext
from controller.policies.fixed import FixedPolicy
from controller.policies.hpa import (HpaBehavior, HpaPolicy, HpaScalingPolicy, HpaScalingRules, HpaState, metric_replicas,
                                     scale_down_limit, scale_up_limit)
from controller.policies.kpa import KpaPolicy
from controller.policies.registry import POLICY_TYPES, build_policy, validate_policy_spec
from controller.policies.threshold import ThresholdPolicy


def ctx(now=0.0, current=1, lo=1, hi=100):
    return PolicyContext(now_s=now, current_replicas=current, min_replicas=lo, max_replicas=hi)


def snap(per_replica, ready, key="requests_running"):
    return {key: per_replica * ready, "requests_waiting": 0.0, "replicas_ready": float(ready)}


# ---------------------------------------------------------------- HPA ratio
def test_doubling_and_halving_from_the_docs():
    # desiredReplicas = ceil(currentReplicas * currentMetricValue / desiredMetricValue)
    assert metric_replicas(200, 100, ready=1, missing=0, current=1) == 2  # 200m vs 100m: double
    assert metric_replicas(50, 100, ready=2, missing=0, current=2) == 1  # 50m vs 100m: halve


def test_within_tolerance_nothing_changes():
    assert metric_replicas(108, 100, ready=5, missing=0, current=5) == 5  # ratio 1.08 <= 1 + 0.1
    assert metric_replicas(115, 100, ready=5, missing=0, current=5) == 6  # ceil(1.15 * 5) = 6


def test_missing_pods_damp_scale_up_and_can_cancel_it():
    # 2 ready pods at 120 (target 100), 2 starting: ratio 1.2 says scale up; counting the
    # starting pods as 0 gives 240 / 400 = 0.6, which flips the direction: keep 4.
    assert metric_replicas(120, 100, ready=2, missing=2, current=4) == 4
    # 2 ready at 300, 1 starting: 600 / 300 = 2.0 -> ceil(2.0 * 3) = 6 (vs 6 without damping: ceil(3 * 2)).
    assert metric_replicas(300, 100, ready=2, missing=1, current=3) == 6


def test_missing_pods_count_as_at_target_when_scaling_down():
    # 2 ready at 50, 1 missing: 0.5 -> (100 + 100) / 300 = 0.667 -> ceil(0.667 * 3) = 2 (not 1).
    assert metric_replicas(50, 100, ready=2, missing=1, current=3) == 2


# ---------------------------------------------------------- HPA behaviour
def test_default_scale_up_takes_the_larger_of_100_percent_and_4_pods():
    rules = HpaBehavior().scale_up
    assert scale_up_limit(10, (), 0.0, rules) == 20  # 100% of 10 beats +4
    assert scale_up_limit(2, (), 0.0, rules) == 6  # +4 beats 100% of 2


def test_select_policy_min_and_disabled():
    rules = HpaScalingRules(0, "Min", (HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15)))
    assert scale_up_limit(10, (), 0.0, rules) == 14
    assert scale_down_limit(10, (), 0.0, HpaScalingRules(300, "Disabled")) == 10


def test_scale_down_policies_from_the_docs():
    # scaleDown: Pods 4 per 60 s and Percent 10 per 60 s, selectPolicy Max (the biggest drop):
    rules = HpaScalingRules(0, "Max", (HpaScalingPolicy("Pods", 4, 60), HpaScalingPolicy("Percent", 10, 60)))
    assert scale_down_limit(80, (), 0.0, rules) == 72  # 10% of 80 = 8 > 4
    assert scale_down_limit(20, (), 0.0, rules) == 16  # 4 pods > 10% of 20 = 2
    # After dropping 8 in this period, the period started at 80: no further drop allowed below 72.
    assert scale_down_limit(72, ((0.0, -8),), 30.0, rules) == 72


def test_hpa_policy_scale_down_stabilization_window():
    hpa = HpaPolicy("requests_per_replica", 10.0)
    state = hpa.initial_state()
    proposal, state = hpa.decide(snap(10, 10), ctx(0, 10), state)  # at target: 10
    assert proposal.replicas == 10
    proposal, state = hpa.decide(snap(4, 10), ctx(15, 10), state)  # load falls: raw 4
    assert proposal.replicas == 10  # the 300 s window still holds the recommendation 10
    for t in range(30, 316, 15):
        proposal, state = hpa.decide(snap(4, 10), ctx(t, 10), state)
    assert proposal.replicas == 4  # the window has moved past t=0


def test_hpa_policy_scale_up_rate_limit_counts_events():
    hpa = HpaPolicy("requests_per_replica", 1.0)
    state = hpa.initial_state()
    proposal, state = hpa.decide(snap(10, 2), ctx(0, 2), state)
    assert proposal.replicas == 6  # raw 20, limited to max(4, 2 + 4)
    proposal, state = hpa.decide(snap(10, 2), ctx(10, 6), state)  # 4 pods added 10 s ago: period starts at 2
    assert proposal.replicas == 6
    assert isinstance(state, HpaState) and state.events == ((0.0, 4),)


def test_hpa_missing_metric_is_no_proposal():
    proposal, _ = HpaPolicy("gpu_utilization", 60).decide({"replicas_ready": 2}, ctx(0, 2), HpaState())
    assert not proposal.valid


# ----------------------------------------------------------- KPA, others
def test_kpa_panics_on_a_burst_and_never_scales_down_in_panic():
    kpa = KpaPolicy(target=10)
    state = kpa.initial_state()
    for t in (0, 15, 30, 45):
        proposal, state = kpa.decide({"requests_running": 20, "requests_waiting": 0, "replicas_ready": 2}, ctx(t, 2), state)
    assert proposal.replicas == 2 and state.panic_since_s is None
    proposal, state = kpa.decide({"requests_running": 60, "requests_waiting": 20, "replicas_ready": 2}, ctx(60, 2), state)
    assert state.panic_since_s == 60 and proposal.replicas == 8  # ceil(80 / 10), 4x the ready pods
    proposal, state = kpa.decide({"requests_running": 10, "requests_waiting": 0, "replicas_ready": 8}, ctx(75, 8), state)
    assert proposal.replicas == 8  # load fell but we are panicking: hold the panic maximum
    for t in (90, 105, 120, 135):
        proposal, state = kpa.decide({"requests_running": 10, "requests_waiting": 0, "replicas_ready": 8}, ctx(t, 8), state)
    assert state.panic_since_s is None  # one stable window (60 s) after the last panic tick
    assert proposal.replicas < 8


def test_threshold_policy():
    policy = ThresholdPolicy(scale_up_tpm=60_000, scale_down_tpm=20_000)
    up, _ = policy.decide({"prompt_token_rate": 2000, "generation_token_rate": 500, "replicas_ready": 2}, ctx(0, 2), None)
    assert up.replicas == 3  # 75,000 tokens/min/replica
    down, _ = policy.decide({"prompt_token_rate": 300, "generation_token_rate": 100, "replicas_ready": 2}, ctx(0, 2), None)
    assert down.replicas == 1
    hold, _ = policy.decide({"prompt_token_rate": 600, "generation_token_rate": 100, "replicas_ready": 1}, ctx(0, 1), None)
    assert hold.replicas == 1
    none, _ = policy.decide({"replicas_ready": 2}, ctx(0, 2), None)
    assert not none.valid
    with pytest.raises(ValueError):
        ThresholdPolicy(10, 20)


def test_fixed_policy():
    assert FixedPolicy(3).decide({}, ctx(0, 7), None)[0].replicas == 3


def test_registry_builds_each_type_and_names_bad_fields(tmp_path):
    assert set(POLICY_TYPES) == {"learned", "hpa", "threshold", "kpa", "fixed"}
    hpa = build_policy({"type": "hpa", "metric": "gpu_utilization", "target": 70,
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}})
    assert hpa.behavior.scale_down.stabilization_window_s == 60 and hpa.behavior.scale_down.policies[0].value == 1
    assert build_policy({"type": "kpa", "target": 5}).name == "kpa"
    assert build_policy({"type": "threshold", "scale_up_tpm": 10, "scale_down_tpm": 5}).name == "threshold"
    with pytest.raises(ValueError, match=r"policy.target: Input should be greater than 0"):
        validate_policy_spec({"type": "hpa", "target": 0})
    with pytest.raises(ValueError, match=r"policy.replica: Extra inputs are not permitted"):
        validate_policy_spec({"type": "fixed", "replicas": 1, "replica": 2})
    with pytest.raises(ValueError, match="policy.type: must be one of"):
        validate_policy_spec({"type": "magic"})
    with pytest.raises(ValueError, match="policy.metric: unknown metric"):
        validate_policy_spec({"type": "hpa", "target": 1, "metric": "vibes"})
    with pytest.raises(ValueError, match="missing metadata.json"):
        build_policy({"type": "learned", "artifact": str(tmp_path)})
