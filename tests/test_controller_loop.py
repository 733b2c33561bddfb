"""The reconcile loop against the Kubernetes API emulator, spoken to by the official client."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import urllib3
import yaml
from typer.testing import CliRunner

from controller.kube import Backoff, KubeClient, _temporary
from controller.leader import LeaderElector, LeaseView, lease_decision
from controller.loop import Reconciler
from controller.prometheus import MetricsUnavailable
from controller.spec import InvalidSpec, parse_autoscaler
from controller.telemetry import ControllerMetrics
from simulator.cli.main import app
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider
from simulator.twin.apiserver import KubeEmulator

REPO = Path(__file__).resolve().parents[1]
CRD = yaml.safe_load((REPO / "controller/crd/inferenceautoscalers.yaml").read_text())
NOW = 1_800_000_000.0
LOADED = {"requests_running": 60.0, "requests_waiting": 20.0, "request_rate": 10.0, "prompt_token_rate": 9000.0, "generation_token_rate": 1500.0}


class FakeReader:
    """Stands in for PrometheusReader: returns the same signals for every target."""

    def __init__(self, snapshot=None, fail=False):
        self.snapshot, self.fail, self.calls = dict(snapshot or LOADED), fail, []

    def read(self, targets, *, time_s=None):
        self.calls.append([t.key for t in targets])
        if self.fail:
            raise MetricsUnavailable("http://prometheus:9090", "connection refused")
        return {t.key: dict(self.snapshot) for t in targets}


def autoscaler(name, target, policy=None, **spec):
    return {"apiVersion": "autoscaling.kis-s.dev/v1alpha1", "kind": "InferenceAutoscaler",
            "metadata": {"name": name, "namespace": "serving", "generation": 1},
            "spec": {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 8,
                     "policy": policy or {"type": "hpa", "parameters": {"target": 10}}, **spec}}


def deployment(name, replicas=2):
    return {"metadata": {"name": name, "namespace": "serving"}, "spec": {"replicas": replicas}}


@pytest.fixture
def emu():
    emulator = KubeEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


def reconciler(emu, reader=None, **kwargs):
    kube = KubeClient(emu.api_client(), backoff=Backoff(attempts=4, base_s=0.0), rng=np.random.default_rng(0), sleep=lambda s: None)
    return Reconciler(kube, reader or FakeReader(), metrics=ControllerMetrics(), **kwargs)


def condition(emu, name, kind):
    status = emu.get("inferenceautoscalers", "serving", name)["status"]
    return next(c for c in status["conditions"] if c["type"] == kind)


# ------------------------------------------------------------------ spec
def test_crd_schema_accepts_good_and_rejects_bad_objects():
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft4Validator(schema).validate(autoscaler("a", "llm", slo={"ttftMs": 300}, behavior={"staleMetrics": "scaleUpOnly"}))
    for bad in (autoscaler("a", "llm", policy={"type": "magic"}), autoscaler("a", "llm", mode="loud"), {"spec": {"maxReplicas": 2}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft4Validator(schema).validate(bad)
    assert [c["name"] for c in CRD["spec"]["versions"][0]["additionalPrinterColumns"]][:6] == ["Target", "Policy", "Min", "Max", "Current", "Desired"]


def test_parse_names_the_bad_field():
    spec = parse_autoscaler(autoscaler("a", "llm", behavior={"maxStepUp": 2, "staleMetrics": "scaleUpOnly"}))
    assert spec.behavior_config().stale_rule == "scale_up_only" and spec.selector("serving") == {"namespace": "serving", "deployment": "llm"}
    with pytest.raises(InvalidSpec, match=r"spec.maxReplicas"):
        parse_autoscaler({"spec": {"scaleTargetRef": {"name": "x"}, "policy": {"type": "hpa"}}})
    with pytest.raises(InvalidSpec, match=r"spec.policy.target"):
        parse_autoscaler(autoscaler("a", "llm", policy={"type": "hpa", "parameters": {"target": -1}}))
    with pytest.raises(InvalidSpec, match="minReplicas must not exceed maxReplicas"):
        parse_autoscaler(autoscaler("a", "llm", minReplicas=9))
    with pytest.raises(InvalidSpec, match="artifact is required"):
        parse_autoscaler(autoscaler("a", "llm", policy={"type": "learned"}))


# ------------------------------------------------------------------ loop
def test_scales_up_emits_event_and_reports_status(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    report = reconciler(emu).tick(NOW)
    assert report.patched == [("serving/llm", 6)]  # hpa: ceil(40 / 10 * 2) = 8, limited to 2 + 4
    assert emu.get("deployments", "serving", "llm")["spec"]["replicas"] == 6
    status = emu.get("inferenceautoscalers", "serving", "llm")["status"]
    assert status["currentReplicas"] == 2 and status["desiredReplicas"] == 6 and status["observedGeneration"] == 1
    assert status["lastDecision"]["policy"] == "hpa" and status["lastScaleTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "ScalingActive": "True", "AbleToScale": "True", "MetricsAvailable": "True", "PolicyLoaded": "True", "InvalidSpec": "False"}
    assert any(e["reason"] == "Scaled" and "2 -> 6" in e["message"] for e in emu.events("serving"))


def test_patches_only_when_the_value_changes(emu):
    emu.put("deployments", deployment("llm", 8))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    rec = reconciler(emu)
    assert rec.tick(NOW).patched == []  # 40 / 10 per replica... 80 in flight over 8 replicas: at target
    assert not [r for r in emu.requests if r[0] == "PATCH" and r[1].endswith("/scale")]


def test_malformed_autoscaler_gets_a_condition_and_others_still_scale(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("good", "llm"))
    emu.put("inferenceautoscalers", autoscaler("bad", "llm", policy={"type": "hpa", "parameters": {"target": "lots"}}))
    report = reconciler(emu).tick(NOW)
    assert report.patched == [("serving/good", 6)]
    bad = condition(emu, "bad", "InvalidSpec")
    assert bad["status"] == "True" and "spec.policy.target" in bad["message"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in emu.events())
    assert ("invalid_spec", bad["message"]) in report.errors


def test_missing_target_is_reported_and_others_go_on(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("orphan", "gone"))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    report = reconciler(emu).tick(NOW)
    assert report.patched == [("serving/llm", 6)]
    assert condition(emu, "orphan", "AbleToScale")["reason"] == "TargetMissing"
    assert any(kind == "target_missing" for kind, _ in report.errors)


def test_prometheus_unreachable_holds_and_never_scales_down(emu):
    emu.put("deployments", deployment("llm", 5))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 1}}))
    report = reconciler(emu, FakeReader(fail=True)).tick(NOW)
    assert report.patched == [] and emu.get("deployments", "serving", "llm")["spec"]["replicas"] == 5
    metrics = condition(emu, "llm", "MetricsAvailable")
    assert metrics["status"] == "False" and "connection refused" in metrics["message"]
    assert report.decisions["serving/llm"].reason.startswith("StaleMetricsHold")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_series_are_stale(emu, bad):
    emu.put("deployments", deployment("llm", 5))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 1}}, behavior={"staleMetrics": "scaleUpOnly"}))
    report = reconciler(emu, FakeReader({**LOADED, "requests_running": bad})).tick(NOW)
    assert report.patched == [] and report.decisions["serving/llm"].stale


def test_conflict_rereads_and_retries(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    emu.inject("PATCH", r"/deployments/llm/scale$", 409)
    assert reconciler(emu).tick(NOW).patched == [("serving/llm", 6)]
    scale_calls = [r for r in emu.requests if r[1].endswith("/deployments/llm/scale")]
    assert [m for m, _ in scale_calls] == ["GET", "PATCH", "GET", "PATCH"]
    assert emu.get("deployments", "serving", "llm")["spec"]["replicas"] == 6


def test_server_errors_back_off_and_succeed(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    emu.inject("GET", r"/deployments/llm/scale$", 503, times=2)
    rec = reconciler(emu)
    assert rec.tick(NOW).patched == [("serving/llm", 6)]
    assert rec.kube.retries == 2


def test_timeouts_are_temporary():
    assert _temporary(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"))
    attempts = []
    kube = KubeClient.__new__(KubeClient)
    kube.backoff, kube.rng, kube.sleep, kube.timeout_s, kube.retries = Backoff(3, 0.0), np.random.default_rng(0), lambda s: None, 1.0, 0

    def flaky(**_):
        attempts.append(1)
        if len(attempts) < 3:
            raise urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")
        return "ok"

    assert kube._call("flaky", flaky) == "ok" and kube.retries == 2


def test_replicas_changed_by_someone_else_are_adopted(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 3}}))
    rec = reconciler(emu)
    rec.tick(NOW)
    dep = emu.get("deployments", "serving", "llm")
    dep["spec"]["replicas"] = 7  # kubectl scale
    emu.put("deployments", dep)
    report = rec.tick(NOW + 15)
    assert any(e["reason"] == "ExternalScale" and "3 -> 7" in e["message"] for e in emu.events())
    assert report.decisions["serving/llm"].current_replicas == 7


def write_artifact(folder: Path, schema_version: str) -> None:
    from tests.test_artifact import write_artifact as write
    from controller.observation import schema_description

    write(folder, metadata_changes={"schema": {**schema_description(), "version": schema_version}})


def test_mismatched_artifact_falls_back_to_the_baseline(emu, tmp_path):
    write_artifact(tmp_path / "old", "kis-obs/0")
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "learned", "artifact": {"path": str(tmp_path / "old")},
                                                                  "baseline": {"type": "fixed", "parameters": {"replicas": 4}}}))
    report = reconciler(emu).tick(NOW)
    loaded = condition(emu, "llm", "PolicyLoaded")
    assert loaded["status"] == "False" and "kis-obs/0" in loaded["message"]
    assert report.patched == [("serving/llm", 4)]  # the baseline acted


def test_learned_policy_from_a_config_map(emu, tmp_path):
    write_artifact(tmp_path / "good", "kis-obs/1")
    import base64

    emu.put("configmaps", {"metadata": {"name": "policy", "namespace": "serving"},
                           "data": {"metadata.json": (tmp_path / "good/metadata.json").read_text()},
                           "binaryData": {"policy.onnx": base64.b64encode((tmp_path / "good/policy.onnx").read_bytes()).decode()}})
    emu.put("deployments", deployment("llm", 4))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "learned", "artifact": {"configMap": {"name": "policy"}}}))
    report = reconciler(emu, artifact_cache=tmp_path / "cache").tick(NOW)
    assert condition(emu, "llm", "PolicyLoaded")["status"] == "True"
    assert report.decisions["serving/llm"].policy == "learned"


def test_shadow_mode_patches_nothing_and_exports_both(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5}}, mode="shadow"))
    rec = reconciler(emu)
    report = rec.tick(NOW)
    assert report.patched == [] and emu.get("deployments", "serving", "llm")["spec"]["replicas"] == 2
    status = emu.get("inferenceautoscalers", "serving", "llm")["status"]
    assert status["shadow"] == {"learned": 5, "baseline": 6} and condition(emu, "llm", "ScalingActive")["reason"] == "ShadowMode"
    text = rec.metrics.exposition()[0].decode()
    assert 'kis_controller_shadow_replicas{autoscaler="llm",namespace="serving",policy="baseline"} 6.0' in text


def test_shadow_can_apply_the_baseline(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 5}}, mode="shadow", shadowApplyBaseline=True))
    assert reconciler(emu).tick(NOW).patched == [("serving/llm", 6)]


def test_dry_run_patches_nothing(emu):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    report = reconciler(emu, dry_run=True).tick(NOW)
    assert report.patched == [] and report.decisions["serving/llm"].final == 6


def test_bridge_same_snapshot_same_decision_on_both_paths(emu):
    """The simulator's decision step and the controller's reconcile loop agree on the same inputs."""
    emu.put("deployments", deployment("llm", 3))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "hpa", "parameters": {"target": 7}}))
    controller_record = reconciler(emu).tick(NOW).decisions["serving/llm"]
    sim_step = make_decider(PolicyEntry("hpa", {"type": "hpa", "target": 7}), EvaluationSetup(min_replicas=1, max_replicas=8))
    snapshot = {**controller_record.inputs}
    sim_record = sim_step(snapshot, NOW, 3)
    assert sim_record.final == controller_record.final and sim_record.proposal == controller_record.proposal
    assert sim_record.steps == controller_record.steps and sim_record.reason == controller_record.reason


# --------------------------------------------------------- leader election
def test_lease_decision_is_pure():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    fresh = LeaseView("a", now - dt.timedelta(seconds=5), 30)
    stale = LeaseView("a", now - dt.timedelta(seconds=31), 30)
    assert lease_decision(None, "b", now) == "create"
    assert lease_decision(fresh, "a", now) == "renew"
    assert lease_decision(fresh, "b", now) == "wait"
    assert lease_decision(stale, "b", now) == "take_over"


def test_two_instances_one_leader_and_takeover(emu):
    def elector(identity):
        return LeaderElector(KubeClient(emu.api_client(), sleep=lambda s: None), "kis-system", "kis", identity, duration_s=30)

    a, b = elector("a"), elector("b")
    t0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)
    assert a.step(t0) and not b.step(t0 + dt.timedelta(seconds=1))
    assert a.step(t0 + dt.timedelta(seconds=15)) and not b.step(t0 + dt.timedelta(seconds=16))
    # a stops renewing; once its lease expires b takes over.
    assert not b.step(t0 + dt.timedelta(seconds=44))
    assert b.step(t0 + dt.timedelta(seconds=46))
    lease = emu.get("leases", "kis-system", "kis")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert not a.step(t0 + dt.timedelta(seconds=47))
    b.release(t0 + dt.timedelta(seconds=50))
    assert a.step(t0 + dt.timedelta(seconds=51))  # released: no need to wait for expiry


# -------------------------------------------------------------------- CLI
def test_cli_once_dry_run(emu, tmp_path):
    emu.put("deployments", deployment("llm", 2))
    emu.put("inferenceautoscalers", autoscaler("llm", "llm"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emu.handle.url}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
        "users": [{"name": "emu", "user": {"token": "x"}}],
    }))
    result = CliRunner().invoke(app, ["controller", "run", "--kubeconfig", str(kubeconfig), "--once", "--dry-run",
                                      "--prometheus-url", "http://127.0.0.1:9", "--log-format", "json"])
    assert result.exit_code == 0, result.output
    assert emu.get("deployments", "serving", "llm")["spec"]["replicas"] == 2  # dry run
    status = emu.get("inferenceautoscalers", "serving", "llm")["status"]
    assert status["lastDecision"]["reason"].startswith("StaleMetricsHold")  # nothing listens on port 9
    logs = [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line.startswith("{")]
    assert {"controller_start", "decision", "controller_stop"} <= {entry["event"] for entry in logs}
