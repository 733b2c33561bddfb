"""The reconcile loop against the kmock-based API emulator, spoken to by the official client over HTTP."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pytest

from controller.observation import OBSERVATION_SIZE, schema_description
from tests.controller_helpers import LOADED, NOW, NS, FakeReader, autoscaler, condition, deployment, reconciler, replicas, scale_writes
from tests.kube_emulator import KubeEmulator, kube  # noqa: F401 (fixture)
from tests.test_artifact import STEPS, metadata, onnx_model, write

# HPA on requests per ready replica, target 10, 2 ready replicas, 80 requests in flight:
# wants ceil(2 * 40 / 10) = 8; without a behavior block kube's legacy path allows at most max(2 x 2, 4) = 4 per sync.
HPA_FROM_2 = 4


# --------------------------------------------------------------- happy path
def test_scales_up_emits_event_and_reports_status(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    report = reconciler(kube).tick(NOW)
    assert report.patched == [("serving/llm", HPA_FROM_2)] and replicas(kube, "llm") == HPA_FROM_2
    status = kube.get("inferenceautoscalers", NS, "llm")["status"]
    assert status["currentReplicas"] == 2 and status["desiredReplicas"] == HPA_FROM_2 and status["observedGeneration"] == 1
    assert status["lastDecision"]["policy"] == "hpa" and status["lastDecision"]["proposal"] == HPA_FROM_2
    assert status["lastScaleTime"] == "2027-01-15T08:00:00Z"  # NOW
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "ScalingActive": "True", "AbleToScale": "True", "MetricsAvailable": "True", "PolicyLoaded": "True", "InvalidSpec": "False"}
    events = [e for e in kube.events(NS) if e["reason"] == "SuccessfulRescale"]
    assert len(events) == 1 and f"New size: {HPA_FROM_2} (was 2)" in events[0]["message"]
    assert events[0]["involvedObject"]["kind"] == "InferenceAutoscaler" and events[0]["involvedObject"]["name"] == "llm"


def test_snapshot_carries_replicas_ready_starting_and_time_of_day():
    emulator = KubeEmulator(auto_ready=False).start()
    try:
        emulator.put("deployments", deployment("llm", 5))
        emulator.set_ready(NS, "llm", 3)
        emulator.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5}}))
        record = reconciler(emulator).tick(NOW).decisions["serving/llm"]
    finally:
        emulator.stop()
    assert record.inputs["replicas_desired"] == 5 and record.inputs["replicas_ready"] == 3 and record.inputs["replicas_starting"] == 2
    assert record.inputs["time_of_day_s"] == NOW % 86400


def test_patches_only_on_change_and_a_steady_state_writes_nothing(kube):
    kube.put("deployments", deployment("llm", 8))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    rec = reconciler(kube)
    first = rec.tick(NOW)  # 80 in flight over 8 replicas = 10 per replica: at target
    assert first.patched == [] and scale_writes(kube) == [] and first.status_writes == 1
    second = rec.tick(NOW + 15)
    assert second.patched == [] and second.status_writes == 0  # same decision: no API write at all
    assert not kube.writes(r"/status$")[1:]


def test_namespace_scope(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("deployments", deployment("llm", 2, namespace="other"))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", namespace="other"))
    report = reconciler(kube, namespace="other").tick(NOW)
    assert report.patched == [("other/llm", HPA_FROM_2)] and replicas(kube, "llm") == 2


# ------------------------------------------------------------ bad objects
def test_malformed_autoscaler_gets_a_condition_and_an_event_once_and_the_other_is_scaled(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("deployments", deployment("other", 2))
    kube.put("inferenceautoscalers", autoscaler("good", "llm"))
    kube.put("inferenceautoscalers", autoscaler("bad", "other", policy={"type": "hpa", "parameters": {"target": "lots"}}))
    rec = reconciler(kube)
    report = rec.tick(NOW)
    assert report.patched == [("serving/good", HPA_FROM_2)] and replicas(kube, "other") == 2
    bad = condition(kube, "bad", "InvalidSpec")
    assert bad["status"] == "True" and bad["message"].startswith("spec.policy.parameters.target")
    assert condition(kube, "bad", "Ready")["status"] == "False"
    assert ("invalid_spec", bad["message"]) in report.errors
    rec.tick(NOW + 15)
    warnings = [e for e in kube.events(NS) if e["reason"] == "InvalidSpec"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"  # no event storm while it stays broken
    assert 'kis_controller_errors_total{kind="invalid_spec"} 2.0' in rec.metrics.exposition()[0].decode()


def test_fixing_a_malformed_autoscaler_clears_the_condition(kube):
    kube.put("deployments", deployment("llm", 2))
    bad = autoscaler("llm", "llm", minReplicas=9)
    kube.put("inferenceautoscalers", bad)
    rec = reconciler(kube)
    rec.tick(NOW)
    assert "minReplicas must not exceed maxReplicas" in condition(kube, "llm", "InvalidSpec")["message"]
    fixed = kube.get("inferenceautoscalers", NS, "llm")
    fixed["spec"]["minReplicas"] = 1
    kube.put("inferenceautoscalers", fixed)
    assert rec.tick(NOW + 15).patched == [("serving/llm", HPA_FROM_2)]
    assert condition(kube, "llm", "InvalidSpec")["status"] == "False" and condition(kube, "llm", "Ready")["status"] == "True"


def test_missing_target_is_reported_once_others_go_on_and_it_recovers(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("orphan", "gone"))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    rec = reconciler(kube)
    report = rec.tick(NOW)
    assert report.patched == [("serving/llm", HPA_FROM_2)]
    able = condition(kube, "orphan", "AbleToScale")
    assert able["status"] == "False" and able["reason"] == "TargetMissing" and "serving/gone" in able["message"]
    assert [kind for kind, _ in report.errors] == ["target_missing"]
    rec.tick(NOW + 15)
    assert len([e for e in kube.events(NS) if e["reason"] == "TargetMissing"]) == 1
    kube.put("deployments", deployment("gone", 2))
    assert ("serving/orphan", HPA_FROM_2) in rec.tick(NOW + 30).patched
    assert condition(kube, "orphan", "AbleToScale")["status"] == "True"


def test_a_target_that_cannot_be_read_does_not_stop_the_others(kube):
    kube.put("deployments", deployment("a", 2))
    kube.put("deployments", deployment("b", 2))
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    kube.put("inferenceautoscalers", autoscaler("b", "b"))
    kube.inject("GET", r"/deployments/a$", 403, times=10)  # permanent: not retried
    report = reconciler(kube).tick(NOW)
    assert report.patched == [("serving/b", HPA_FROM_2)]
    assert [r for r in kube.requests if r[1].endswith("/deployments/a")] == [("GET", "/apis/apps/v1/namespaces/serving/deployments/a")]
    assert condition(kube, "a", "AbleToScale")["reason"] == "FailedGetScale" and report.errors[0][0] == "kubernetes"


def test_many_targets_in_a_namespace_are_read_with_one_list(kube):
    for name in ("a", "b", "c"):
        kube.put("deployments", deployment(name, 2))
        kube.put("inferenceautoscalers", autoscaler(name, name))
    kube.put("inferenceautoscalers", autoscaler("orphan", "gone"))
    kube.put("deployments", deployment("solo", 2, namespace="other"))
    kube.put("inferenceautoscalers", autoscaler("solo", "solo", namespace="other"))
    report = reconciler(kube, list_threshold=2).tick(NOW)
    assert sorted(report.patched) == [("other/solo", HPA_FROM_2)] + [(f"serving/{n}", HPA_FROM_2) for n in "abc"]
    reads = [p for m, p in kube.requests if m == "GET" and "/deployments" in p and not p.endswith("/scale")]
    assert reads == [f"/apis/apps/v1/namespaces/{NS}/deployments", "/apis/apps/v1/namespaces/other/deployments/solo"]
    assert condition(kube, "orphan", "AbleToScale")["reason"] == "TargetMissing" and [k for k, _ in report.errors] == ["target_missing"]


def test_a_failed_list_falls_back_to_one_get_each(kube):
    for name in ("a", "b"):
        kube.put("deployments", deployment(name, 2))
        kube.put("inferenceautoscalers", autoscaler(name, name))
    kube.inject("GET", rf"/namespaces/{NS}/deployments$", 403)  # e.g. RBAC without "list"
    report = reconciler(kube, list_threshold=2).tick(NOW)
    assert sorted(report.patched) == [("serving/a", HPA_FROM_2), ("serving/b", HPA_FROM_2)]
    assert report.errors[0][0] == "kubernetes" and "one by one" in report.errors[0][1]


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize(("rule", "policy_wants", "expected"), [
    ("hold", 1, 5), ("hold", 8, 5),                  # hold: nothing moves
    ("scaleUpOnly", 1, 5), ("scaleUpOnly", 7, 7),    # up is taken, down never
    ("baseline", 1, 5),                              # the baseline (fixed 3) is floored at the current 5
])
def test_prometheus_unreachable_applies_the_stale_rule_and_never_scales_down(kube, rule, policy_wants, expected):
    kube.put("deployments", deployment("llm", 5))
    spec = autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": policy_wants}, "baseline": {"type": "fixed", "parameters": {"replicas": 3}}},
                      behavior={"staleMetrics": rule})
    kube.put("inferenceautoscalers", spec)
    report = reconciler(kube, FakeReader(fail=True)).tick(NOW)
    assert replicas(kube, "llm") == expected and report.decisions["serving/llm"].stale
    metrics = condition(kube, "llm", "MetricsAvailable")
    assert metrics["status"] == "False" and "connection refused" in metrics["message"]
    assert [kind for kind, _ in report.errors] == ["prometheus"]


def test_stale_baseline_rule_takes_the_baseline_when_it_is_higher(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 1},
                                                                  "baseline": {"type": "fixed", "parameters": {"replicas": 4}}},
                                                behavior={"staleMetrics": "baseline"}))
    report = reconciler(kube, FakeReader(fail=True)).tick(NOW)
    assert report.patched == [("serving/llm", 4)] and report.decisions["serving/llm"].reason.startswith("StaleMetricsBaseline")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_series_are_stale(kube, bad):
    kube.put("deployments", deployment("llm", 5))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 1}}))
    rec = reconciler(kube, FakeReader({**LOADED, "requests_waiting": bad}))
    report = rec.tick(NOW)
    assert report.patched == [] and report.decisions["serving/llm"].stale
    assert condition(kube, "llm", "MetricsAvailable")["reason"] == "StaleMetrics"
    assert 'kis_controller_metrics_stale{autoscaler="llm",namespace="serving"} 1.0' in rec.metrics.exposition()[0].decode()


def test_one_batched_prometheus_read_per_tick(kube):
    for name in ("a", "b", "c"):
        kube.put("deployments", deployment(name, 2))
        kube.put("inferenceautoscalers", autoscaler(name, name))
    reader = FakeReader()
    reconciler(kube, reader).tick(NOW)
    assert len(reader.calls) == 1 and len(reader.calls[0]) == 3


# ------------------------------------------------------------------ faults
def test_conflict_rereads_and_retries(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.inject("PATCH", r"/deployments/llm/scale$", 409)
    rec = reconciler(kube)
    assert rec.tick(NOW).patched == [("serving/llm", HPA_FROM_2)]
    calls = [m for m, p in kube.requests if p.endswith("/deployments/llm/scale")]
    assert calls == ["PATCH", "GET", "PATCH"] and replicas(kube, "llm") == HPA_FROM_2


def test_a_write_in_between_is_a_real_conflict_then_the_retry_wins(kube):
    """Someone scales between our read and our write: the stale resourceVersion answers 409, we re-read and win."""
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    rec = reconciler(kube)
    original = rec.kube.read_target

    def read_then_someone_writes(namespace, name):
        state = original(namespace, name)
        dep = kube.get("deployments", namespace, name)
        dep["metadata"].pop("resourceVersion")
        kube.put("deployments", {**dep, "metadata": {**dep["metadata"], "labels": {"touched": "yes"}}})
        return state

    rec.kube.read_target = read_then_someone_writes
    report = rec.tick(NOW)
    assert report.patched == [("serving/llm", HPA_FROM_2)] and rec.kube.retries == 1
    assert [m for m, p in kube.requests if p.endswith("/scale")] == ["PATCH", "GET", "PATCH"]


def test_conflicts_that_never_end_are_bounded_and_reported(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.inject("PATCH", r"/deployments/llm/scale$", 409, times=100)
    rec = reconciler(kube)
    report = rec.tick(NOW)
    assert report.patched == [] and ("conflict" in [kind for kind, _ in report.errors])
    assert len([1 for m, p in kube.requests if m == "PATCH" and p.endswith("/scale")]) == 4  # the first try and 3 re-reads
    able = condition(kube, "llm", "AbleToScale")
    assert able["status"] == "False" and able["reason"] == "FailedUpdateScale"
    assert any(e["reason"] == "FailedRescale" and e["type"] == "Warning" for e in kube.events(NS))


def test_server_errors_back_off_and_succeed(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.inject("GET", r"/deployments/llm$", 503, times=2)
    sleeps: list[float] = []
    rec = reconciler(kube, sleeps=sleeps)
    assert rec.tick(NOW).patched == [("serving/llm", HPA_FROM_2)]
    assert rec.kube.retries == 2 and len(sleeps) == 2 and 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.4  # full jitter, doubling cap


def test_a_timeout_is_retried(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.inject("GET", r"/deployments/llm$", None, delay_s=1.0)  # served late, after the client gave up
    rec = reconciler(kube)
    rec.kube.timeout_s = 0.2
    assert rec.tick(NOW).patched == [("serving/llm", HPA_FROM_2)] and rec.kube.retries == 1


def test_listing_failure_ends_the_tick_cleanly(kube):
    kube.inject("GET", r"/inferenceautoscalers$", 500, times=10)
    report = reconciler(kube).tick(NOW)
    assert report.decisions == {} and report.errors[0][0] == "kubernetes" and "after 4 attempts" in report.errors[0][1]


def test_a_status_write_failure_does_not_stop_scaling(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kube.inject("PATCH", r"/status$", 422, times=10)
    report = reconciler(kube).tick(NOW)
    assert report.patched == [("serving/llm", HPA_FROM_2)] and [kind for kind, _ in report.errors] == ["kubernetes"]


def test_replicas_changed_by_someone_else_are_adopted(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 3}}))
    rec = reconciler(kube)
    assert rec.tick(NOW).patched == [("serving/llm", 3)]
    dep = kube.get("deployments", NS, "llm")
    dep["spec"]["replicas"] = 7  # kubectl scale --replicas 7
    kube.put("deployments", dep)
    report = rec.tick(NOW + 15)
    assert any(e["reason"] == "ExternalScale" and "3 -> 7" in e["message"] for e in kube.events(NS))
    record = report.decisions["serving/llm"]
    assert record.current_replicas == 7 and record.inputs["replicas_desired"] == 7  # decided from what is there now
    assert report.patched == [("serving/llm", 3)]  # written with the new resourceVersion: no conflict
    assert rec.kube.retries == 0 and replicas(kube, "llm") == 3


# --------------------------------------------------------------- artifacts
def artifact(folder: Path, step: int | None = None, schema_version: str | None = None) -> Path:
    """A learned policy that always takes ``step`` (zero weights, a bias on that action)."""
    changes = {"schema": {**schema_description(), "version": schema_version}} if schema_version else {}
    bias = np.zeros(len(STEPS))
    if step is not None:
        bias[STEPS.index(step)] = 1.0
    weights = np.zeros((OBSERVATION_SIZE, len(STEPS))) if step is not None else np.random.default_rng(0).normal(size=(OBSERVATION_SIZE, len(STEPS)))
    blob = onnx_model(weights, bias)
    write(folder, blob, metadata(blob, **changes))
    return folder


def learned(ref: dict, baseline_replicas: int = 4) -> dict:
    return {"type": "learned", "artifact": ref, "baseline": {"type": "fixed", "parameters": {"replicas": baseline_replicas}}}


def test_learned_policy_from_a_path(kube, tmp_path):
    kube.put("deployments", deployment("llm", 3))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy=learned({"path": str(artifact(tmp_path / "a", step=2))})))
    report = reconciler(kube).tick(NOW)
    assert report.patched == [("serving/llm", 5)] and report.decisions["serving/llm"].policy == "learned"
    assert condition(kube, "llm", "PolicyLoaded")["status"] == "True"


def test_mismatched_artifact_falls_back_to_the_baseline(kube, tmp_path):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy=learned({"path": str(artifact(tmp_path / "old", schema_version="kis-obs/0"))})))
    rec = reconciler(kube)
    report = rec.tick(NOW)
    loaded = condition(kube, "llm", "PolicyLoaded")
    assert loaded["status"] == "False" and loaded["reason"] == "FallbackToBaseline"
    assert "kis-obs/0" in loaded["message"] and "falling back to the baseline (fixed)" in loaded["message"]
    assert report.patched == [("serving/llm", 4)] and ("policy_load" in [kind for kind, _ in report.errors])


def test_corrupt_artifact_falls_back_to_the_baseline(kube, tmp_path):
    folder = artifact(tmp_path / "bad")
    (folder / "policy.onnx").write_bytes(b"not an onnx model")
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy=learned({"path": str(folder)})))
    report = reconciler(kube).tick(NOW)
    assert "checksum mismatch" in condition(kube, "llm", "PolicyLoaded")["message"] and report.patched == [("serving/llm", 4)]


def config_map(name: str, folder: Path) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": {"metadata.json": (folder / "metadata.json").read_text()},
            "binaryData": {"policy.onnx": base64.b64encode((folder / "policy.onnx").read_bytes()).decode()}}


def test_config_map_artifact_is_shared_and_reloaded_when_it_changes(kube, tmp_path):
    kube.put("configmaps", config_map("policy", artifact(tmp_path / "up", step=1)))
    for name in ("a", "b"):
        kube.put("deployments", deployment(name, 3))
        kube.put("inferenceautoscalers", autoscaler(name, name, policy=learned({"configMap": {"name": "policy"}})))
    rec = reconciler(kube, artifact_cache=tmp_path / "cache", artifact_refresh_s=60)
    assert sorted(rec.tick(NOW).patched) == [("serving/a", 4), ("serving/b", 4)]
    assert rec.artifacts.loads == 1  # one load for both autoscalers
    broken = config_map("policy", artifact(tmp_path / "down", step=-1))
    broken["binaryData"]["policy.onnx"] = base64.b64encode(b"garbage").decode()
    kube.put("configmaps", broken)
    rec.tick(NOW + 15)  # within the refresh period: the old version stays
    assert condition(kube, "a", "PolicyLoaded")["status"] == "True"
    rec.tick(NOW + 75)
    loaded = condition(kube, "a", "PolicyLoaded")
    assert loaded["status"] == "False" and "configmap serving/policy" in loaded["message"]
    kube.put("configmaps", config_map("policy", artifact(tmp_path / "down2", step=-1)))
    report = rec.tick(NOW + 150)
    assert condition(kube, "b", "PolicyLoaded")["status"] == "True" and rec.artifacts.loads == 3
    assert report.decisions["serving/a"].proposal == report.decisions["serving/a"].current_replicas - 1


def test_missing_config_map_falls_back(kube, tmp_path):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy=learned({"configMap": {"name": "nope"}})))
    reconciler(kube, artifact_cache=tmp_path).tick(NOW)
    assert "configmap serving/nope: not found" in condition(kube, "llm", "PolicyLoaded")["message"]


# ----------------------------------------------------------- shadow and dry run
def test_shadow_mode_patches_nothing_and_exports_both(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5},
                                                                  "baseline": {"type": "hpa", "parameters": {"target": 10}}}, mode="shadow"))
    rec = reconciler(kube)
    report = rec.tick(NOW)
    assert report.patched == [] and scale_writes(kube) == [] and replicas(kube, "llm") == 2
    status = kube.get("inferenceautoscalers", NS, "llm")["status"]
    assert status["shadow"] == {"learned": 5, "baseline": HPA_FROM_2} and status["desiredReplicas"] == 2
    assert condition(kube, "llm", "ScalingActive")["reason"] == "ShadowMode"
    text = rec.metrics.exposition()[0].decode()
    assert f'kis_controller_shadow_replicas{{autoscaler="llm",namespace="serving",policy="baseline"}} {HPA_FROM_2}.0' in text
    assert 'kis_controller_shadow_replicas{autoscaler="llm",namespace="serving",policy="fixed"} 5.0' in text
    assert 'kis_controller_desired_replicas{autoscaler="llm",namespace="serving"} 2.0' in text


def test_shadow_can_apply_the_baseline_through_the_guardrails(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5},
                                                                  "baseline": {"type": "fixed", "parameters": {"replicas": 8}}},
                                                mode="shadow", shadowApplyBaseline=True, behavior={"maxStepUp": 3}))
    report = reconciler(kube).tick(NOW)
    assert report.patched == [("serving/llm", 5)]  # baseline wants 8, +3 per interval
    assert report.shadow["serving/llm"].steps[0].guard == "ScaleUpLimit"


def test_unapplied_shadow_decisions_do_not_start_a_cooldown(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5}}, mode="shadow",
                                                behavior={"cooldownSeconds": 120}))
    rec = reconciler(kube)
    rec.tick(NOW)
    second = rec.tick(NOW + 15).decisions["serving/llm"]
    assert second.final == 5 and not [s for s in second.steps if s.guard == "Cooldown"]


def test_dry_run_patches_nothing(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    report = reconciler(kube, dry_run=True).tick(NOW)
    assert report.patched == [] and scale_writes(kube) == [] and report.decisions["serving/llm"].final == HPA_FROM_2
    assert condition(kube, "llm", "ScalingActive")["reason"] == "DryRun"
    assert kube.get("inferenceautoscalers", NS, "llm")["status"]["desiredReplicas"] == HPA_FROM_2


# ---------------------------------------------------------------- lifecycle
def test_deleted_autoscalers_are_pruned(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    rec = reconciler(kube)
    rec.tick(NOW)
    assert len(rec.targets) == 1
    kube.delete("inferenceautoscalers", NS, "llm")
    rec.tick(NOW + 15)
    assert rec.targets == {}
    assert 'autoscaler="llm"' not in rec.metrics.exposition()[0].decode()


def test_a_spec_change_rebuilds_the_policy_and_keeps_the_guardrail_history(kube):
    kube.put("deployments", deployment("llm", 6))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 6}}))
    rec = reconciler(kube)
    rec.tick(NOW)
    obj = kube.get("inferenceautoscalers", NS, "llm")
    obj["spec"]["policy"]["parameters"]["replicas"] = 2
    assert kube.put("inferenceautoscalers", obj)["metadata"]["generation"] == 2
    record = rec.tick(NOW + 15).decisions["serving/llm"]
    assert record.proposal == 2 and record.final == 6  # the stabilisation window still remembers 6
    assert record.steps[-1].guard == "ScaleDownStabilized"
    assert kube.get("inferenceautoscalers", NS, "llm")["status"]["observedGeneration"] == 2


def test_conditions_keep_their_transition_time_until_the_status_changes(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    fails, works = FakeReader(fail=True), FakeReader()
    rec = reconciler(kube, fails)
    rec.tick(NOW)
    first = condition(kube, "llm", "MetricsAvailable")
    rec.tick(NOW + 15)
    assert condition(kube, "llm", "MetricsAvailable")["lastTransitionTime"] == first["lastTransitionTime"]
    rec.reader = works
    rec.tick(NOW + 30)
    now_ok = condition(kube, "llm", "MetricsAvailable")
    assert now_ok["status"] == "True" and now_ok["lastTransitionTime"] == "2027-01-15T08:00:30Z"
