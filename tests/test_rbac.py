"""The chart grants exactly the API verbs the controller uses: recorded against the emulator, compared both ways."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from pathlib import Path

import numpy as np
import pytest

from controller.informer import KubeCache
from controller.leader import LeaderElector
from tests.controller_helpers import NOW, NS, autoscaler, deployment, kube_client, reconciler
from tests.kube_emulator import kube  # noqa: F401 (fixture)
from tests.test_helm_chart import EXPECTED_RULES, VARIANTS, render, rules_by_resource

SHIPPED = Path(__file__).resolve().parents[1] / "controller" / "policies" / "default"
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "WATCH": "watch"}


def verb_of(method: str, path: str) -> tuple[str, str, str]:
    """(API group, resource[/subresource], RBAC verb) of one request the emulator logged."""
    match = PATH.match(path)
    assert match, path
    group = "" if match["core"] else match["group"]
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    if method == "GET":
        verb = "get" if match["name"] else "list"
    else:
        verb = VERBS[method]
    return group, resource, verb


@pytest.mark.helm
def test_the_controller_uses_exactly_what_the_chart_grants(kube):
    kube.put("deployments", deployment("a", 2))
    kube.put("deployments", deployment("b", 2))
    kube.put("configmaps", {"metadata": {"name": "policy", "namespace": NS}, "data": {"metadata.json": (SHIPPED / "metadata.json").read_text()},
                            "binaryData": {"policy.onnx": base64.b64encode((SHIPPED / "policy.onnx").read_bytes()).decode()}})
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    kube.put("inferenceautoscalers", autoscaler("b", "b", policy={"type": "learned", "artifact": {"configMap": {"name": "policy"}}}))
    kube.put("deployments", deployment("p-embed", 2))
    kube.put("inferencepipelineautoscalers", {"metadata": {"name": "p", "namespace": NS}, "spec": {"stages": [
        {"name": "embed", "scaleTargetRef": {"name": "p-embed"}, "maxReplicas": 4, "policy": {"type": "fixed", "parameters": {"replicas": 3}}}]}})
    # the running controller: informers, a tick that scales and reports, a conflict re-read
    cache = KubeCache(kube.api_client(), rng=np.random.default_rng(0)).start()
    try:
        assert cache.wait_synced(10)
        deadline = time.monotonic() + 10
        while kube.open_watches < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        kube.inject("PATCH", r"/deployments/a/scale$", 409, times=1)
        report = reconciler(kube, cache=cache).tick(NOW)
        assert report.patched and report.status_writes == 3
    finally:
        cache.stop()
    # `kis controller run --once` reads without informers
    assert reconciler(kube).tick(NOW + 15).decisions
    # leader election: create, renew, release
    elector = LeaderElector(kube_client(kube), "kis-system", "kis", "a", duration_s=15)
    t0 = dt.datetime(2026, 11, 24, 12, tzinfo=dt.timezone.utc)
    assert elector.step(t0) and elector.step(t0 + dt.timedelta(seconds=5))
    elector.release(t0 + dt.timedelta(seconds=6))

    used: dict[tuple[str, str], set[str]] = {}
    for method, path in kube.requests:
        group, resource, verb = verb_of(method, path)
        used.setdefault((group, resource), set()).add(verb)
    assert used == EXPECTED_RULES
    granted = rules_by_resource([o for o in render(VARIANTS["default"]) if o["kind"] in ("Role", "ClusterRole")])
    assert granted == used
