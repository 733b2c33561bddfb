"""The InferenceAutoscaler CRD and the spec models: the schema (OpenAPI + CEL) and the parser agree, defaults match."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.cli import CRD as CRD_PATH
from controller.policies.registry import build_policy
from controller.spec import GROUP, KIND, PLURAL, VERSION, InvalidSpec, parse_autoscaler
from tests.controller_helpers import autoscaler

CRD = yaml.safe_load(CRD_PATH.read_text())
(SERVED,) = CRD["spec"]["versions"]
SCHEMA = SERVED["schema"]["openAPIV3Schema"]
CEL = celpy.Environment()


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting, as the API server does before validation."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out


def cel_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule on the value it sits on."""
    found = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            found.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                found += cel_violations(sub, value[key], f"{path}.{key}")
    return found


def api_server_admits(obj: dict[str, Any]) -> list[str]:
    """What the API server would say: OpenAPI (draft 4, as Kubernetes) after defaulting, then CEL."""
    defaulted = apply_defaults(SCHEMA, obj)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft4Validator(SCHEMA).iter_errors(defaulted)]
    return errors or cel_violations(SCHEMA, defaulted)


# ------------------------------------------------------------------ the CRD
def test_crd_is_a_valid_apiextensions_v1_object():
    kubernetes_validate.validate(CRD, "1.29", strict=True)
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}" and CRD["spec"]["group"] == GROUP and CRD["spec"]["scope"] == "Namespaced"
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (KIND, PLURAL, "inferenceautoscaler", ["ias"])
    assert SERVED["name"] == VERSION and SERVED["served"] and SERVED["storage"] and SERVED["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in SERVED["additionalPrinterColumns"]}
    assert columns == {"Target": ".spec.scaleTargetRef.name", "Policy": ".spec.policy.type", "Min": ".spec.minReplicas",
                       "Max": ".spec.maxReplicas", "Current": ".status.currentReplicas", "Desired": ".status.desiredReplicas",
                       "Mode": ".spec.mode", "Age": ".metadata.creationTimestamp"}


GOOD = [
    autoscaler("minimal", "llm"),
    autoscaler("full", "llm", policy={"type": "hpa", "parameters": {"metric": "requests_per_replica", "target": 8},
                                      "baseline": {"type": "threshold", "parameters": {"scaleUpTpm": 9000, "scaleDownTpm": 3000}}},
               minReplicas=0, mode="shadow", shadowApplyBaseline=True, slo={"ttftMs": 300, "tpotMs": 40},
               metrics={"selector": {"app": "llm"}, "windowSeconds": 30, "longWindowSeconds": 600, "overrides": {"request_rate": "sum(rate(x{sel}[{window}]))"}},
               behavior={"maxStepUp": 2, "maxStepDown": 1, "scaleDownStabilizationSeconds": 120, "cooldownSeconds": 30,
                         "cooldownUpSeconds": 10, "staleMetrics": "scaleUpOnly"},
               scaleToZero={"activationQuery": "sum(kis_gateway_pending_requests{{sel}})", "activationThreshold": 2, "idleSeconds": 600}),
    autoscaler("learned", "llm", policy={"type": "learned", "artifact": {"configMap": {"name": "policy"}}}),
    autoscaler("learned-path", "llm", policy={"type": "learned", "artifact": {"path": "/policies/default"}}),
    autoscaler("learned-default", "llm", policy={"type": "learned"}),
    autoscaler("planner", "llm", policy={"type": "planner", "parameters": {"targetUtilization": 0.7}}, coldStartSeconds=120,
               capacity={"promptTokens": [1000, 4000], "outputTokens": [200, 800], "maxRps": [[4, 3], [2, 1.5]], "source": "test"}),
]


@pytest.mark.parametrize("obj", GOOD, ids=lambda o: o["metadata"]["name"])
def test_good_objects_pass_the_schema_and_the_parser(obj):
    assert api_server_admits(obj) == []
    parse_autoscaler(obj)
    parse_autoscaler(apply_defaults(SCHEMA, obj))


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = autoscaler("a", "llm")
    obj["spec"].update(changes)
    return obj


BAD = [  # (object, what the parser's message names)
    (with_spec(policy={"type": "magic"}), "spec.policy.type"),
    (with_spec(mode="loud"), "spec.mode"),
    (with_spec(minReplicas=-1), "spec.minReplicas"),
    (with_spec(maxReplicas=0), "spec.maxReplicas"),
    (with_spec(minReplicas=9), "minReplicas must not exceed maxReplicas"),                   # CEL
    (with_spec(slo={"ttftMs": 0}), "spec.slo.ttftMs"),
    (with_spec(metrics={"windowSeconds": 2}), "spec.metrics.windowSeconds"),
    (with_spec(metrics={"windowSeconds": 60, "longWindowSeconds": 30}), "longWindowSeconds must be at least"),  # CEL
    (with_spec(behavior={"staleMetrics": "panic"}), "spec.behavior.staleMetrics"),
    (with_spec(behavior={"maxStepUp": 0}), "spec.behavior.maxStepUp"),
    (with_spec(behavior={"cooldownSeconds": -1}), "spec.behavior.cooldownSeconds"),
    (with_spec(scaleTargetRef={"kind": "StatefulSet", "name": "llm"}), "spec.scaleTargetRef.kind"),
    (with_spec(scaleTargetRef={"name": ""}), "spec.scaleTargetRef.name"),
    (with_spec(policy={"type": "planner"}), "a planner needs spec.capacity"),                # CEL
    (with_spec(policy={"type": "learned", "artifact": {"path": "/p", "configMap": {"name": "c"}}}), "exactly one of path or configMap"),  # CEL
    (with_spec(policy={"type": "hpa", "baseline": {"type": "learned"}}), "spec.policy.baseline.type"),
    (with_spec(minReplicas=0), "minReplicas 0 needs scaleToZero.activationQuery"),             # CEL
    (with_spec(minReplicas=0, scaleToZero={"idleSeconds": 60}), "minReplicas 0 needs scaleToZero.activationQuery"),  # CEL
    (with_spec(scaleToZero={"activationQuery": "q", "idleSeconds": -1}), "spec.scaleToZero.idleSeconds"),
]


@pytest.mark.parametrize(("obj", "named"), BAD, ids=[n for _, n in BAD])
def test_bad_objects_are_refused_by_the_api_server_and_by_the_parser(obj, named):
    assert api_server_admits(obj), "the CRD schema lets this through"
    with pytest.raises(InvalidSpec, match=named.replace(".", r"\.")):
        parse_autoscaler(obj)


def test_missing_required_fields():
    for missing in ("maxReplicas", "policy", "scaleTargetRef"):
        obj = autoscaler("a", "llm")
        del obj["spec"][missing]
        assert api_server_admits(obj)
        with pytest.raises(InvalidSpec, match=f"spec.{missing}: Field required"):
            parse_autoscaler(obj)
    with pytest.raises(InvalidSpec, match="spec: missing"):
        parse_autoscaler({"metadata": {"name": "a"}})


@pytest.mark.parametrize(("parameters", "named"), [
    ({"target": -1}, "spec.policy.parameters.target"),
    ({"target": "lots"}, "spec.policy.parameters.target"),
    ({"target": 8, "bogus": 1}, "spec.policy.parameters.bogus"),
    ({"target": 8, "metric": "vibes"}, "unknown metric"),
])
def test_policy_parameters_are_checked_by_the_registry_with_their_path(parameters, named):
    """Parameters are free-form in the CRD (each policy has its own); the parser names the field."""
    obj = with_spec(policy={"type": "hpa", "parameters": parameters})
    assert api_server_admits(obj) == []
    with pytest.raises(InvalidSpec, match=named):
        parse_autoscaler(obj)


def test_crd_defaults_are_the_parser_defaults():
    """An object the API server defaulted parses to the same spec as the bare one."""
    bare = {"spec": {"scaleTargetRef": {"name": "llm"}, "maxReplicas": 4, "policy": {"type": "hpa", "parameters": {"target": 8}},
                     "slo": {}, "metrics": {}, "behavior": {}}}
    defaulted = apply_defaults(SCHEMA, bare)
    assert defaulted["spec"]["minReplicas"] == 1
    # no window is defaulted in: the controller picks one that does not stack on the policy's own
    assert "scaleDownStabilizationSeconds" not in defaulted["spec"]["behavior"]
    assert parse_autoscaler(defaulted) == parse_autoscaler(bare)


@pytest.mark.parametrize(("capacity", "named"), [
    ({"promptTokens": [1000, 500], "outputTokens": [200], "maxRps": [[4], [3]]}, "capacity.prompt_tokens: must be a non-empty increasing"),
    ({"promptTokens": [500, 1000], "outputTokens": [200], "maxRps": [[4]]}, "capacity.maxRps: must be 2 rows of 1"),
])
def test_capacity_grids_the_schema_cannot_judge_are_refused_by_the_parser(capacity, named):
    """The API server checks the capacity's shape and signs; ordering and row lengths are the controller's to refuse."""
    obj = with_spec(policy={"type": "planner"}, capacity=capacity)
    assert api_server_admits(obj) == []
    with pytest.raises(InvalidSpec, match=named):
        parse_autoscaler(obj)


# -------------------------------------------------------------- conversion
def test_conversion_to_the_shared_autoscaler_config():
    spec = parse_autoscaler(GOOD[1])
    behavior = spec.behavior_config()
    assert (behavior.min_replicas, behavior.max_replicas, behavior.max_step_up, behavior.max_step_down) == (0, 8, 2, 1)
    assert behavior.scale_down_stabilization_s == 120 and behavior.stale_rule == "scale_up_only"
    assert (behavior.cooldown_up_s, behavior.cooldown_down_s) == (10, 30)  # cooldownUpSeconds overrides cooldownSeconds
    assert (behavior.activation_threshold, behavior.scale_to_zero_idle_s) == (2, 600)
    assert spec.metric_overrides() == {"request_rate": "sum(rate(x{sel}[{window}]))", "gateway_pending": "sum(kis_gateway_pending_requests{{sel}})"}
    assert spec.slo_config().ttft_s == pytest.approx(0.3) and spec.slo_config().tpot_s == pytest.approx(0.04)
    assert spec.selector("serving") == {"app": "llm"}
    assert build_policy(spec.policy_mapping()).name == "hpa" and build_policy(spec.baseline_mapping()).name == "threshold"
    minimal = parse_autoscaler(GOOD[0])
    assert minimal.selector("serving") == {"namespace": "serving", "deployment": "llm"}
    assert minimal.baseline_mapping()["type"] == "hpa" and minimal.behavior_config().stale_rule == "hold"
    assert minimal.slo_config().ttft_s == pytest.approx(0.5) and minimal.slo_config().tpot_s == pytest.approx(0.05)
