"""The InferencePipelineAutoscaler CRD and its parser: schema (OpenAPI + CEL) and parser agree; a stage is an InferenceAutoscaler's spec."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.pipeline_spec import PIPELINE_KIND, PIPELINE_PLURAL, parse_pipeline
from controller.spec import GROUP, InvalidSpec
from tests.test_controller_spec import SCHEMA as AUTOSCALER_SCHEMA
from tests.test_controller_spec import apply_defaults, cel_violations

CRD_PATH = Path(__file__).resolve().parents[1] / "controller" / "crd" / "inferencepipelineautoscalers.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
(SERVED,) = CRD["spec"]["versions"]
SCHEMA = SERVED["schema"]["openAPIV3Schema"]
STAGE = SCHEMA["properties"]["spec"]["properties"]["stages"]["items"]


def stage(name: str, target: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"name": name, "scaleTargetRef": {"name": target or name}, "maxReplicas": 4, "policy": {"type": "hpa", "parameters": {"target": 8}}, **spec}


def pipeline(*stages: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": PIPELINE_KIND, "metadata": {"name": "rag", "namespace": "serving"},
            "spec": {"stages": list(stages) or [stage("embed"), stage("llm")], **spec}}


def api_server_admits(obj: dict[str, Any]) -> list[str]:
    """OpenAPI (draft 4) after defaulting (stages' items too), then CEL, then the list-map key's uniqueness."""
    defaulted = apply_defaults(SCHEMA, obj)
    defaulted["spec"]["stages"] = [apply_defaults(STAGE, s) for s in defaulted["spec"].get("stages", [])]
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft4Validator(SCHEMA).iter_errors(defaulted)]
    names = [s.get("name") for s in defaulted["spec"].get("stages", [])]
    errors += [f"spec.stages: duplicate name {n}" for n in set(names) if names.count(n) > 1]
    return errors or cel_violations(SCHEMA, defaulted) + [v for s in defaulted["spec"]["stages"] for v in cel_violations(STAGE, s)]


def test_crd_is_a_valid_apiextensions_v1_object_of_its_own_kind():
    kubernetes_validate.validate(CRD, "1.29", strict=True)
    assert CRD["metadata"]["name"] == f"{PIPELINE_PLURAL}.{GROUP}" and CRD["spec"]["names"]["kind"] == PIPELINE_KIND
    assert "stages list in InferenceAutoscaler" in SCHEMA["description"]  # the choice, said where users read it


def test_a_stage_is_an_inference_autoscalers_spec_plus_its_name_and_gpus():
    spec = copy.deepcopy(AUTOSCALER_SCHEMA["properties"]["spec"])
    for key in ("mode", "shadowApplyBaseline"):  # one target's shadow mode; a pipeline acts as a whole
        spec["properties"].pop(key)
    got = {k: v for k, v in STAGE["properties"].items() if k not in ("name", "gpusPerReplica")}
    assert got == spec["properties"], "the stage schema drifted from inferenceautoscalers.yaml"
    assert STAGE["x-kubernetes-validations"] == spec["x-kubernetes-validations"]
    assert set(STAGE["required"]) == set(spec["required"]) | {"name"}


def test_a_good_pipeline_passes_the_schema_and_the_parser_with_the_same_defaults():
    obj = pipeline(stage("embed", gpusPerReplica=1), stage("llm", minReplicas=2, maxReplicas=8, gpusPerReplica=2), budget={"maxGpus": 12})
    assert api_server_admits(obj) == []
    parsed = parse_pipeline(obj)
    assert [s.name for s in parsed.stages] == ["embed", "llm"] and parsed.budget.max_gpus == 12
    bare = pipeline(stage("embed"))
    defaulted = apply_defaults(SCHEMA, bare)
    defaulted["spec"]["stages"] = [apply_defaults(STAGE, s) for s in defaulted["spec"]["stages"]]
    assert defaulted["spec"]["stages"][0]["gpusPerReplica"] == 1 and defaulted["spec"]["stages"][0]["minReplicas"] == 1
    assert parse_pipeline(defaulted) == parse_pipeline(bare)
    assert parse_pipeline(bare).budget.max_gpus is None


@pytest.mark.parametrize(("obj", "named"), [
    (pipeline(stage("embed"), stage("llm", maxReplicas=0)), "spec.stages[1].maxReplicas"),
    (pipeline(stage("embed"), stage("embed", "other")), "stage names must be unique: embed"),
    (pipeline(stage("embed"), stage("llm", "embed")), "embed is the target of several stages"),
    (pipeline(stage("Embed")), "spec.stages[0].name"),
    (pipeline(stage("embed", minReplicas=3), budget={"maxGpus": 2}), "budget.maxGpus 2 is below the 3 GPUs"),
    (pipeline(stage("embed", minReplicas=5, maxReplicas=4)), "minReplicas must not exceed maxReplicas"),
    (pipeline(stage("embed", mode="shadow")), "spec.stages[0].mode"),
    (pipeline(stage("embed", gpusPerReplica=-1)), "spec.stages[0].gpusPerReplica"),
])
def test_bad_pipelines_are_refused_with_one_line_naming_the_field(obj, named):
    with pytest.raises(InvalidSpec) as info:
        parse_pipeline(obj)
    message = str(info.value)
    assert named in message and "\n" not in message
    if "below the 3 GPUs" not in named and "mode" not in named:  # a sum over stages; an unknown field (the API server prunes it)
        assert api_server_admits(obj), "the CRD schema lets this through"


def test_policy_parameters_are_checked_with_the_stage_path():
    with pytest.raises(InvalidSpec, match=r"^spec\.stages\[1\]\.policy\.parameters\.target"):
        parse_pipeline(pipeline(stage("embed"), stage("llm", policy={"type": "hpa", "parameters": {"target": "lots"}})))
    with pytest.raises(InvalidSpec, match="spec: missing"):
        parse_pipeline({"metadata": {"name": "x"}})
    with pytest.raises(InvalidSpec, match=r"spec\.stages"):
        parse_pipeline(pipeline() | {"spec": {"stages": []}})
