"""The policy registry: plain mappings in, policies out; errors name the field."""

from __future__ import annotations

import pytest

from controller.policies.fixed import FixedPolicy
from controller.policies.hpa import HpaPolicy, HpaScalingPolicy
from controller.policies.kpa import KpaPolicy
from controller.policies.registry import POLICY_TYPES, FixedSpec, HpaSpec, build_policy, validate_policy_spec
from controller.policies.threshold import ThresholdPolicy


def test_policy_types():
    assert set(POLICY_TYPES) == {"learned", "hpa", "threshold", "kpa", "fixed"}


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
    ({"type": "fixed", "replicas": 1, "replica": 2}, "policy.replica: Extra inputs are not permitted"),
    ({"type": "fixed"}, "policy.replicas: Field required"),
    ({"type": "kpa", "target": 1, "panic_window_s": 90}, "policy.panicWindowS:"),
    ({"type": "threshold", "scale_up_tpm": 5, "scale_down_tpm": 10}, "policy.scaleDownTpm: must be below scaleUpTpm"),
    ({"type": "learned"}, "policy.artifact: Field required"),
    ({"type": "magic"}, "policy.type: must be one of"),
    ({"target": 3}, "policy.type:"),
])
def test_errors_name_the_field(spec, field):
    with pytest.raises(ValueError) as info:
        validate_policy_spec(spec)
    assert field in str(info.value)


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
