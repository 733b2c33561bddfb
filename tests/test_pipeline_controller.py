"""The reconcile loop runs InferencePipelineAutoscalers: created through the API emulator with the official client, stages scaled jointly."""

from __future__ import annotations

import math

from kubernetes import client

from controller.pipeline_spec import PIPELINE_PLURAL
from controller.spec import GROUP, VERSION
from tests.controller_helpers import LOADED, NOW, NS, FakeReader, autoscaler, deployment, reconciler, replicas
from tests.kube_emulator import KubeEmulator, kube  # noqa: F401 (fixture)

#: an HPA on requests per ready replica (target 10) allowed to jump all the way in one interval
FAST_HPA = {"type": "hpa", "parameters": {"target": 10, "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}]}}}}


def stage(name: str, max_replicas: int = 10, **spec) -> dict:
    return {"name": name, "scaleTargetRef": {"name": f"rag-{name}"}, "minReplicas": 1, "maxReplicas": max_replicas, "policy": FAST_HPA, **spec}


def pipeline_obj(name: str = "rag", stages: list[dict] | None = None, max_gpus: int | None = None) -> dict:
    spec: dict = {"stages": stages or [stage("embed"), stage("rerank"), stage("llm", gpusPerReplica=2)]}
    if max_gpus is not None:
        spec["budget"] = {"maxGpus": max_gpus}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferencePipelineAutoscaler", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def create(kube: KubeEmulator, obj: dict) -> dict:
    """Create through the official client, as kubectl would."""
    return client.CustomObjectsApi(kube.api_client()).create_namespaced_custom_object(GROUP, VERSION, NS, PIPELINE_PLURAL, obj)


def load(running: float) -> dict[str, float]:
    return {**LOADED, "requests_running": running, "requests_waiting": 0.0}


def reader_for(uid: str, **running: float) -> FakeReader:
    return FakeReader(per_key={f"pipeline:{uid}/{name}": load(n) for name, n in running.items()})


def setup(kube: KubeEmulator, **pipeline) -> str:
    for name in ("embed", "rerank", "llm"):
        kube.put("deployments", deployment(f"rag-{name}", 2))
    created = create(kube, pipeline_obj(**pipeline))
    return created["metadata"]["uid"]


def test_a_pipeline_created_through_the_api_scales_its_deployments_jointly(kube):
    uid = setup(kube)
    rec = reconciler(kube, reader_for(uid, embed=40, rerank=20, llm=120))
    report = rec.tick(NOW)
    assert {k: v for k, v in report.patched} == {"serving/rag/embed": 4, "serving/rag/llm": 10}
    assert (replicas(kube, "rag-embed"), replicas(kube, "rag-rerank"), replicas(kube, "rag-llm")) == (4, 2, 10)
    status = kube.get("inferencepipelineautoscalers", NS, "rag")["status"]
    assert status["stages"]["embed"] == {"currentReplicas": 2, "desiredReplicas": 4, "lastDecision": status["stages"]["embed"]["lastDecision"],
                                         "lastScaleTime": "2027-01-15T08:00:00Z"}
    assert status["stages"]["llm"]["lastDecision"]["policy"] == "hpa" and status["gpus"] == {"wanted": 4 + 2 + 20, "desired": 26}
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Ready"] == ("True", "Reconciled") and conditions["BudgetLimited"] == ("False", "WithinBudget")
    events = [e for e in kube.events(NS) if e["reason"] == "SuccessfulRescale"]
    assert {e["involvedObject"]["kind"] for e in events} == {"InferencePipelineAutoscaler"} and len(events) == 2
    assert any("deployment rag-llm: New size: 10 (was 2)" in e["message"] for e in events)
    # per stage, in the controller's metrics, labelled by pipeline and stage
    text = rec.metrics.exposition()[0].decode()
    assert 'kis_controller_pipeline_stage_desired_replicas{namespace="serving",pipeline="rag",stage="llm"} 10.0' in text
    assert 'kis_controller_pipeline_gpus{kind="desired",namespace="serving",pipeline="rag"} 26.0' in text
    # the same load on the new fleets: nothing to patch; then a steady state writes no status at all
    assert rec.tick(NOW + 15).patched == []
    again = rec.tick(NOW + 30)
    assert again.patched == [] and again.status_writes == 0


def test_the_shared_budget_cuts_across_stages_and_says_why(kube):
    uid = setup(kube, max_gpus=12)
    rec = reconciler(kube, reader_for(uid, embed=40, rerank=20, llm=120))
    report = rec.tick(NOW)
    finals = {k.rsplit("/", 1)[1]: r.final for k, r in report.decisions.items() if k.startswith("serving/rag/")}
    assert finals["embed"] + finals["rerank"] + 2 * finals["llm"] <= 12
    cut = [name for name, r in report.decisions.items() if r.steps and r.steps[-1].guard == "BudgetLimit"]
    assert cut and all(report.decisions[name].reason.startswith("BudgetLimit: ") for name in cut)
    assert (replicas(kube, "rag-embed"), replicas(kube, "rag-rerank"), replicas(kube, "rag-llm")) == (finals["embed"], finals["rerank"], finals["llm"])
    status = kube.get("inferencepipelineautoscalers", NS, "rag")["status"]
    used = finals["embed"] + finals["rerank"] + 2 * finals["llm"]
    assert status["gpus"] == {"wanted": 26, "desired": used, "budget": 12} and used >= 11  # within one 2-GPU replica of the budget
    limited = next(c for c in status["conditions"] if c["type"] == "BudgetLimited")
    assert limited["status"] == "True" and "12 GPUs shared, 26 wanted" in limited["message"]
    llm = status["stages"]["llm"]["lastDecision"]
    assert llm["reason"].startswith("BudgetLimit") and llm["steps"][-1].startswith("BudgetLimit: 10 -> ")
    text = rec.metrics.exposition()[0].decode()
    assert 'kis_controller_pipeline_budget_cuts_total{namespace="serving",pipeline="rag",stage="llm"} 1.0' in text


def test_a_malformed_pipeline_gets_one_clear_error_and_the_others_are_served(kube):
    uid = setup(kube)
    kube.put("deployments", deployment("solo", 2))
    kube.put("inferenceautoscalers", autoscaler("solo", "solo"))
    bad = pipeline_obj("broken", [stage("embed", scaleTargetRef={"name": "other-embed"}), stage("llm", scaleTargetRef={"name": "other-llm"}, max_replicas=0)])
    kube.put("inferencepipelineautoscalers", bad)
    reader = FakeReader(per_key={f"pipeline:{uid}/embed": load(40), f"pipeline:{uid}/rerank": load(20), f"pipeline:{uid}/llm": load(20)})
    rec = reconciler(kube, reader)
    report = rec.tick(NOW)
    assert ("serving/solo", 4) in report.patched and ("serving/rag/embed", 4) in report.patched  # the others are served
    (error,) = [m for kind, m in report.errors if kind == "invalid_spec"]
    assert error == "spec.stages[1].maxReplicas: Input should be greater than or equal to 1"
    status = kube.get("inferencepipelineautoscalers", NS, "broken")["status"]
    invalid = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert invalid["status"] == "True" and invalid["message"] == error
    warnings = [e for e in kube.events(NS) if e["reason"] == "InvalidSpec"]
    assert len(warnings) == 1 and warnings[0]["involvedObject"]["kind"] == "InferencePipelineAutoscaler"
    rec.tick(NOW + 15)  # the problem lasts: no second Warning
    assert len([e for e in kube.events(NS) if e["reason"] == "InvalidSpec"]) == 1


def test_a_missing_stage_deployment_holds_the_pipeline_and_the_rest_goes_on(kube):
    uid = setup(kube)
    kube.delete("deployments", NS, "rag-rerank")
    rec = reconciler(kube, reader_for(uid, embed=40, rerank=20, llm=120))
    report = rec.tick(NOW)
    assert not [p for p in report.patched if p[0].startswith("serving/rag/")] and replicas(kube, "rag-embed") == 2
    ready = next(c for c in kube.get("inferencepipelineautoscalers", NS, "rag")["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "rerank" in ready["message"]
    kube.put("deployments", deployment("rag-rerank", 2))
    assert rec.tick(NOW + 15).patched  # back: decided again


def test_stale_stage_metrics_never_scale_that_stage_down(kube):
    uid = setup(kube)
    reader = FakeReader(per_key={f"pipeline:{uid}/embed": load(40), f"pipeline:{uid}/rerank": {"requests_running": math.nan},
                                 f"pipeline:{uid}/llm": load(0)})
    report = reconciler(kube, reader).tick(NOW)
    rerank = report.decisions["serving/rag/rerank"]
    assert rerank.stale and rerank.final == 2
    status = kube.get("inferencepipelineautoscalers", NS, "rag")["status"]
    assert next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")["status"] == "False"


def test_a_restarted_controller_sheds_no_stages_replicas(kube):
    uid = setup(kube)
    slow = {**FAST_HPA, "parameters": {**FAST_HPA["parameters"], "behavior": {**FAST_HPA["parameters"]["behavior"],
                                                                              "scaleDown": {"stabilizationWindowSeconds": 300}}}}
    kube.put("inferencepipelineautoscalers", {**pipeline_obj(stages=[stage("embed", policy=slow), stage("rerank"), stage("llm")]),
                                              "metadata": {"name": "rag", "namespace": NS, "uid": uid}})
    reconciler(kube, reader_for(uid, embed=80, rerank=20, llm=20)).tick(NOW)
    assert replicas(kube, "rag-embed") == 8
    # a new controller process, the load gone: the stage's stabilisation hold comes from the pipeline's status
    report = reconciler(kube, reader_for(uid, embed=0, rerank=0, llm=0)).tick(NOW + 15)
    assert report.decisions["serving/rag/embed"].final == 8 and replicas(kube, "rag-embed") == 8
