"""KubeClient against the API emulator: retries, backoff, timeouts, the error taxonomy, and the emulator's semantics."""

from __future__ import annotations

import base64
import datetime as dt

import numpy as np
import pytest
import urllib3
from kubernetes import client

from controller.kube import Backoff, KubeClient, KubeError, TargetMissing, _temporary
from tests.controller_helpers import NS, autoscaler, deployment, kube_client, replicas
from tests.kube_emulator import kube  # noqa: F401 (fixture)


# ------------------------------------------------------------------ backoff
def test_backoff_is_full_jitter_under_a_doubling_cap_and_reproducible():
    backoff = Backoff(attempts=6, base_s=0.5, max_s=3.0)
    first = [backoff.delay(k, np.random.default_rng(3)) for k in range(6)]
    again = [backoff.delay(k, np.random.default_rng(3)) for k in range(6)]
    assert first == again
    rng = np.random.default_rng(0)
    for attempt, cap in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= cap and max(delays) > 0.8 * cap  # spread over the whole range
    with pytest.raises(ValueError, match="attempts"):
        Backoff(attempts=0)


def test_error_taxonomy():
    assert _temporary(client.ApiException(status=503)) and _temporary(client.ApiException(status=429))
    assert _temporary(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"))
    assert _temporary(urllib3.exceptions.MaxRetryError(None, "/", ConnectionRefusedError()))
    assert not _temporary(client.ApiException(status=403)) and not _temporary(client.ApiException(status=422))


# ---------------------------------------------------------------- retries
def test_5xx_backs_off_then_succeeds(kube):
    kube.put("deployments", deployment("llm", 3))
    kube.inject("GET", r"/deployments/llm$", 503, times=2)
    sleeps: list[float] = []
    kc = kube_client(kube, sleeps=sleeps)
    state = kc.read_target(NS, "llm")
    assert state.replicas == 3 and kc.retries == 2
    expected_rng = np.random.default_rng(7)  # the client's rng: the delays are reproducible
    assert sleeps == [Backoff(4, 0.2, 3.0).delay(0, expected_rng), Backoff(4, 0.2, 3.0).delay(1, expected_rng)]


def test_5xx_forever_gives_up_after_the_bounded_attempts(kube):
    kube.put("deployments", deployment("llm", 3))
    kube.inject("GET", r"/deployments/llm$", 500, times=100)
    kc = kube_client(kube, attempts=3)
    with pytest.raises(KubeError) as info:
        kc.read_target(NS, "llm")
    assert info.value.temporary and info.value.status == 500 and info.value.kind == "kubernetes"
    assert len([r for r in kube.requests if r[1].endswith("/deployments/llm")]) == 3


def test_permanent_errors_are_not_retried(kube):
    kube.put("deployments", deployment("llm", 3))
    kube.inject("GET", r"/deployments/llm$", 403, times=100)
    kc = kube_client(kube)
    with pytest.raises(KubeError) as info:
        kc.read_target(NS, "llm")
    assert not info.value.temporary and info.value.status == 403 and kc.retries == 0


def test_timeout_then_success(kube):
    kube.put("deployments", deployment("llm", 3))
    kube.inject("GET", r"/deployments/llm$", None, delay_s=1.0)
    kc = kube_client(kube, timeout_s=0.2)
    assert kc.read_target(NS, "llm").replicas == 3 and kc.retries == 1


def test_timeouts_forever_are_temporary_errors(kube):
    kube.put("deployments", deployment("llm", 3))
    kube.inject("GET", r"/deployments/llm$", None, delay_s=0.5, times=2)
    kc = kube_client(kube, attempts=2, timeout_s=0.1)
    with pytest.raises(KubeError) as info:
        kc.read_target(NS, "llm")
    assert info.value.temporary and info.value.status is None and "after 2 attempts" in str(info.value)


def test_connection_refused_is_temporary():
    config = client.Configuration()
    config.host, config.retries = "http://127.0.0.1:9", False
    kc = KubeClient(client.ApiClient(config), backoff=Backoff(2, 0.0), rng=np.random.default_rng(0), sleep=lambda s: None)
    with pytest.raises(KubeError) as info:
        kc.list_autoscalers()
    assert info.value.temporary and kc.retries == 1


def test_missing_target_is_target_missing(kube):
    with pytest.raises(TargetMissing) as info:
        kube_client(kube).read_target(NS, "ghost")
    assert info.value.kind == "target_missing" and "serving/ghost" in str(info.value)


# ---------------------------------------------------------------- conflicts
def test_conflict_then_retry_succeeds(kube):
    kube.put("deployments", deployment("llm", 2))
    kc = kube_client(kube)
    stale = kc.read_target(NS, "llm").resource_version
    dep = kube.get("deployments", NS, "llm")
    kube.put("deployments", {**dep, "metadata": {**dep["metadata"], "annotations": {"someone": "else"}}})  # a write in between
    kc.patch_scale(NS, "llm", 5, stale)
    assert replicas(kube, "llm") == 5 and kc.retries == 1
    assert [m for m, p in kube.requests if p.endswith("/scale")] == ["PATCH", "GET", "PATCH"]


def test_conflicts_are_bounded(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.inject("PATCH", r"/scale$", 409, times=100)
    kc = kube_client(kube)
    with pytest.raises(KubeError) as info:
        kc.patch_scale(NS, "llm", 5, kc.read_target(NS, "llm").resource_version, conflicts=2)
    assert info.value.kind == "conflict" and "after 2 re-reads" in str(info.value)
    assert len([1 for m, p in kube.requests if m == "PATCH"]) == 3 and replicas(kube, "llm") == 2


# --------------------------------------------------------- other calls
def test_lists_autoscalers_in_one_or_all_namespaces(kube):
    kube.put("inferenceautoscalers", autoscaler("a", "x"))
    kube.put("inferenceautoscalers", autoscaler("b", "y", namespace="other"))
    kc = kube_client(kube)
    assert sorted(o["metadata"]["name"] for o in kc.list_autoscalers()) == ["a", "b"]
    assert [o["metadata"]["name"] for o in kc.list_autoscalers("other")] == ["b"]


def test_status_patch_changes_only_the_status(kube):
    kube.put("inferenceautoscalers", autoscaler("a", "x"))
    kube_client(kube).patch_status(NS, "a", {"currentReplicas": 3, "spec": "ignored"})
    obj = kube.get("inferenceautoscalers", NS, "a")
    assert obj["status"]["currentReplicas"] == 3 and obj["spec"]["scaleTargetRef"]["name"] == "x" and obj["metadata"]["generation"] == 1


def test_events_are_core_v1_events_about_the_autoscaler(kube):
    obj = kube.put("inferenceautoscalers", autoscaler("a", "x"))
    when = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)
    kube_client(kube).emit_event(NS, obj, "SuccessfulRescale", "New size: 3", now=when)
    (event,) = kube.events(NS)
    assert event["metadata"]["name"].startswith("a.") and event["type"] == "Normal" and event["reason"] == "SuccessfulRescale"
    assert event["involvedObject"] == {"apiVersion": "autoscaling.kis-s.dev/v1alpha1", "kind": "InferenceAutoscaler", "name": "a",
                                       "namespace": NS, "uid": obj["metadata"]["uid"]}
    assert event["lastTimestamp"].startswith("2026-11-24T12:00:00") and event["source"]["component"] == "kis-controller"


def test_config_map_files_decode_binary_data(kube):
    kube.put("configmaps", {"metadata": {"name": "p", "namespace": NS}, "data": {"metadata.json": "{}"},
                            "binaryData": {"policy.onnx": base64.b64encode(b"\x00\x01onnx").decode()}})
    files = kube_client(kube).read_config_map(NS, "p")
    assert files.files == {"metadata.json": b"{}", "policy.onnx": b"\x00\x01onnx"} and files.resource_version


# -------------------------------------------------- the emulator's semantics
def test_emulator_scale_subresource_and_resource_versions(kube):
    """The semantics kmock lacks and the controller relies on, checked through the official client."""
    kube.put("deployments", deployment("llm", 2))
    apps = client.AppsV1Api(kube.api_client())
    scale = apps.read_namespaced_deployment_scale("llm", NS)
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1" and scale.spec.replicas == 2 and scale.status.selector == "app=llm"
    after = apps.patch_namespaced_deployment_scale("llm", NS, {"spec": {"replicas": 4}, "metadata": {"resourceVersion": scale.metadata.resource_version}})
    assert after.spec.replicas == 4 and int(after.metadata.resource_version) > int(scale.metadata.resource_version)
    with pytest.raises(client.ApiException) as info:
        apps.patch_namespaced_deployment_scale("llm", NS, {"spec": {"replicas": 5}, "metadata": {"resourceVersion": scale.metadata.resource_version}})
    assert info.value.status == 409
    dep = apps.read_namespaced_deployment("llm", NS)
    assert dep.spec.replicas == 4 and dep.status.ready_replicas == 4


def test_emulator_creates_with_201_and_replaces_leases_with_put(kube):
    coordination = client.CoordinationV1Api(kube.api_client())
    lease = client.V1Lease(metadata=client.V1ObjectMeta(name="l"), spec=client.V1LeaseSpec(holder_identity="a"))
    created, code, _ = coordination.create_namespaced_lease_with_http_info("kis", lease)
    assert code == 201 and created.metadata.uid
    with pytest.raises(client.ApiException) as info:
        coordination.create_namespaced_lease("kis", lease)
    assert info.value.status == 409
    created.spec.holder_identity = "b"
    replaced = coordination.replace_namespaced_lease("l", "kis", created)
    assert replaced.spec.holder_identity == "b"
    with pytest.raises(client.ApiException) as info:
        coordination.replace_namespaced_lease("l", "kis", created)  # the resourceVersion is stale now
    assert info.value.status == 409


# ------------------------------------------------------------------ lists
def test_list_targets_reads_what_each_get_reads(kube):
    for name, count in (("a", 2), ("b", 5)):
        kube.put("deployments", deployment(name, count))
    kube.put("deployments", deployment("elsewhere", 1, namespace="other"))
    kube.set_ready(NS, "b", 3)
    kc = kube_client(kube)
    listed = kc.list_targets(NS)
    assert set(listed) == {"a", "b"}  # one namespace only
    for name in ("a", "b"):
        assert listed[name] == kc.read_target(NS, name)
    assert (listed["b"].replicas, listed["b"].ready, listed["b"].starting) == (5, 3, 2)


def test_list_failures_follow_the_taxonomy(kube):
    kube.put("deployments", deployment("a", 2))
    kube.inject("GET", rf"/namespaces/{NS}/deployments$", 503, times=1)
    sleeps: list[float] = []
    assert list(kube_client(kube, sleeps=sleeps).list_targets(NS)) == ["a"] and len(sleeps) == 1  # retried once, then read
    kube.inject("GET", rf"/namespaces/{NS}/deployments$", 403, times=1)
    with pytest.raises(KubeError) as err:
        kube_client(kube).list_targets(NS)
    assert err.value.status == 403 and not err.value.temporary
