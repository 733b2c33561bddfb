"""The policy registry: plain mappings in, policies out; errors name the field."""

from __future__ import annotations

import pytest

from controller.policies.fixed import FixedPolicy
from controller.policies.hpa import HpaPolicy, HpaScalingPolicy
from controller.policies.kpa import KpaPolicy
from controller.policies.registry import POLICY_TYPES, FixedSpec, HpaSpec, build_policy, validate_policy_spec
from controller.policies.threshold import ThresholdPolicy

MINIMAL = {"learned": {}, "planner": {}, "hpa": {"target": 8}, "threshold": {"scaleUpTpm": 10, "scaleDownTpm": 5}, "kpa": {"target": 4},
           "fixed": {"replicas": 2}}


@pytest.mark.parametrize("kind", POLICY_TYPES)
def test_every_policy_type_builds_from_a_minimal_spec_and_decides(kind):
    """Each advertised type builds (a learned one without an artifact runs the shipped default) and proposes replicas."""
    from controller.capacity import CapacityProfile
    from controller.policies.base import PolicyContext

    policy = build_policy({"type": kind, **MINIMAL[kind]})
    assert policy.name == kind
    snapshot = {"requests_running": 80.0, "requests_waiting": 40.0, "replicas_ready": 2.0, "request_rate": 20.0, "ttft_p95": 3.0,
                "prompt_token_rate": 20_000.0, "generation_token_rate": 4_000.0, "concurrency_stable": 120.0, "concurrency_panic": 120.0}
    capacity = CapacityProfile((1000.0,), (200.0,), ((4.0,),))
    proposal, _ = policy.decide(snapshot, PolicyContext(0.0, 2, 1, 16, capacity=capacity), policy.initial_state())
    assert proposal.replicas is not None and proposal.replicas >= 2  # a loaded, queueing target is not shrunk


def test_builds_each_rule_policy_with_its_parameters():
    hpa = build_policy({"type": "hpa", "metric": "gpu_utilization", "target": 70, "tolerance": 0.05})
    assert isinstance(hpa, HpaPolicy) and (hpa.metric, hpa.target, hpa.tolerance) == ("gpu_utilization", 70, 0.05)
    kpa = build_policy({"type": "kpa", "target": 5, "panicThreshold": 3})
    assert isinstance(kpa, KpaPolicy) and (kpa.target, kpa.panic_threshold, kpa.stable_window_s) == (5, 3, 60)
    threshold = build_policy({"type": "threshold", "scaleUpTpm": 10, "scale_down_tpm": 5, "stepUp": 2})
    assert isinstance(threshold, ThresholdPolicy) and (threshold.scale_up_tpm, threshold.step_up, threshold.step_down) == (10, 2, 1)
    fixed = build_policy(FixedSpec(type="fixed", replicas=4))  # an already validated spec
    assert isinstance(fixed, FixedPolicy) and fixed.replicas == 4


def test_hpa_behavior_keeps_kubernetes_defaults_for_what_is_not_given():
    hpa = build_policy({"type": "hpa", "target": 8, "behavior": {
        "scaleDown": {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]},
        "scaleUp": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min"},
    }})
    assert isinstance(hpa, HpaPolicy)
    down, up = hpa.behavior.scale_down, hpa.behavior.scale_up
    assert down.stabilization_window_s == 300 and down.policies == (HpaScalingPolicy("Percent", 10, 60),)
    assert up.stabilization_window_s == 30 and up.select_policy == "Min"
    assert up.policies == (HpaScalingPolicy("Percent", 100, 15), HpaScalingPolicy("Pods", 4, 15))


@pytest.mark.parametrize(("spec", "field"), [
    ({"type": "hpa", "target": 0}, "policy.target:"),
    ({"type": "hpa", "target": 1, "metric": "vibes"}, "policy.metric: unknown metric 'vibes'"),
    ({"type": "hpa", "target": 1, "behavior": {"scaleDown": {"policies": [{"type": "Pod", "value": 1, "periodSeconds": 15}]}}},
     "policy.behavior.scaleDown.policies[0].type:"),
    ({"type": "hpa", "target": 1, "behavior": {"scaleUp": {"policies": []}}}, "policy.behavior.scaleUp.policies:"),
    ({"type": "hpa", "target": 1, "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 15.5}]}}},
     "policy.behavior.scaleUp.policies[0].periodSeconds:"),
    ({"type": "hpa", "target": 1, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3601}}},
     "policy.behavior.scaleDown.stabilizationWindowSeconds:"),
    ({"type": "hpa", "target": 1, "behavior": {"scaleDown": {"tolerance": -0.1}}}, "policy.behavior.scaleDown.tolerance:"),
    ({"type": "hpa", "target": 1, "metrics": [{"metric": "kv_cache_usage", "target": 0.5}]}, "policy.target: give exactly one of"),
    ({"type": "hpa", "metrics": [{"metric": "vibes", "target": 1}]}, "policy.metrics[0].metric: unknown metric"),
    ({"type": "hpa", "metrics": []}, "policy.metrics:"),
    ({"type": "kpa", "target": 1, "activation_scale": 0}, "policy.activation_scale:"),
    ({"type": "fixed", "replicas": 1, "replica": 2}, "policy.replica: Extra inputs are not permitted"),
    ({"type": "fixed"}, "policy.replicas: Field required"),
    ({"type": "kpa", "target": 1, "panic_window_s": 90}, "policy.panicWindowS:"),
    ({"type": "threshold", "scale_up_tpm": 5, "scale_down_tpm": 10}, "policy.scaleDownTpm: must be below scaleUpTpm"),
    ({"type": "learned", "artifact": ""}, "policy.artifact: String should have at least 1 character"),
    ({"type": "magic"}, "policy.type: must be one of"),
    ({"target": 3}, "policy.type:"),
])
def test_errors_name_the_field(spec, field):
    with pytest.raises(ValueError) as info:
        validate_policy_spec(spec)
    assert field in str(info.value)


def test_hpa_without_behavior_takes_the_legacy_path_and_metrics_lists_work():
    legacy = build_policy({"type": "hpa", "target": 8})
    assert isinstance(legacy, HpaPolicy) and legacy.behavior is None
    several = build_policy({"type": "hpa", "metrics": [{"metric": "requests_per_replica", "target": 8},
                                                       {"metric": "kv_cache_usage", "target": 0.8}],
                            "behavior": {"scaleUp": {"tolerance": 0.02}}})
    assert isinstance(several, HpaPolicy) and several.metrics_ == (("requests_per_replica", 8.0), ("kv_cache_usage", 0.8))
    assert several.tolerances == (0.1, 0.02)
    kpa = build_policy({"type": "kpa", "target": 4, "activationScale": 3, "scaleToZeroGraceS": 10})
    assert isinstance(kpa, KpaPolicy) and (kpa.activation_scale, kpa.scale_to_zero_grace_s) == (3, 10)


def test_not_a_mapping():
    with pytest.raises(ValueError, match="policy: must be a mapping"):
        validate_policy_spec(["hpa"])  # type: ignore[arg-type]


def test_validation_returns_typed_specs():
    spec = validate_policy_spec({"type": "hpa", "target": 4})
    assert isinstance(spec, HpaSpec) and spec.metric == "requests_per_replica" and spec.tolerance == 0.1


def test_learned_artifact_errors_surface(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing metadata.json"):
        build_policy({"type": "learned", "artifact": "empty"}, base_dir=tmp_path)
    with pytest.raises(ValueError, match="no such directory"):
        build_policy({"type": "learned", "artifact": str(tmp_path / "absent")})


def test_exact_messages_and_every_parameter_passed_on():
    with pytest.raises(ValueError, match=r"^policy: must be a mapping with a 'type', got list$"):
        validate_policy_spec(["hpa"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^policy.type: must be one of learned, planner, hpa, threshold, kpa, fixed, got 'magic'$"):
        validate_policy_spec({"type": "magic"})
    with pytest.raises(ValueError, match=r"^policy.target: .+; policy.bogus: Extra inputs are not permitted$"):
        validate_policy_spec({"type": "hpa", "target": -1, "bogus": 1})
    threshold = build_policy({"type": "threshold", "scaleUpTpm": 10, "scaleDownTpm": 5, "stepUp": 2, "stepDown": 3})
    assert isinstance(threshold, ThresholdPolicy) and (threshold.step_up, threshold.step_down) == (2, 3)
    kpa = build_policy({"type": "kpa", "target": 4, "stableWindowS": 120, "panicWindowS": 12, "panicThreshold": 3,
                        "maxScaleUpRate": 5, "maxScaleDownRate": 4, "activationScale": 2, "scaleToZeroGraceS": 7})
    assert isinstance(kpa, KpaPolicy)
    assert (kpa.stable_window_s, kpa.panic_window_s, kpa.panic_threshold, kpa.max_scale_up_rate, kpa.max_scale_down_rate,
            kpa.activation_scale, kpa.scale_to_zero_grace_s) == (120, 12, 3, 5, 4, 2, 7)


def test_relative_artifact_without_base_dir_and_metric_message():
    with pytest.raises(ValueError, match="no such directory"):
        build_policy({"type": "learned", "artifact": "no-such-artifact-folder"})
    with pytest.raises(ValueError, match=r"unknown metric 'vibes'; choose one of requests_per_replica, running_per_replica, waiting_per_replica"):
        validate_policy_spec({"type": "hpa", "target": 1, "metric": "vibes"})
