"""End to end: a real Prometheus scraping a fake vLLM exporter, the real PrometheusReader, the API emulator, the loop."""

from __future__ import annotations

import time

import pytest

from controller import signals as sig
from controller.loop import Reconciler
from controller.prometheus import PrometheusReader
from controller.telemetry import ControllerMetrics
from tests.controller_helpers import autoscaler, condition, deployment, kube_client, replicas
from tests.kube_emulator import kube  # noqa: F401 (fixture)
from tests.prom_harness import TARGET_A, TARGET_B, prom_exporter, prometheus  # noqa: F401 (fixtures)

pytestmark = pytest.mark.prometheus


def test_reconcile_from_real_prometheus(kube, prometheus):
    exporter = prometheus.exporter
    exporter.set_gauge(sig.RUNNING, 60, TARGET_A)
    exporter.set_gauge(sig.WAITING, 20, TARGET_A)
    prometheus.wait_for_samples(f'{sig.WAITING}{{pod="{TARGET_A.pod}"}}', 1)
    for target in (TARGET_A, TARGET_B):  # B's pods export nothing
        kube.put("deployments", deployment(target.deployment, 2, namespace=target.namespace))
        kube.put("inferenceautoscalers", autoscaler(target.deployment, target.deployment, namespace=target.namespace,
                                                    policy={"type": "hpa", "parameters": {"target": 10}}))
    with PrometheusReader(prometheus.url, timeout_s=5.0) as reader:
        report = Reconciler(kube_client(kube), reader, metrics=ControllerMetrics()).tick(time.time())

    a = report.decisions[f"{TARGET_A.namespace}/{TARGET_A.deployment}"]
    assert a.inputs["requests_running"] == 60 and a.inputs["requests_waiting"] == 20 and not a.stale
    assert replicas(kube, TARGET_A.deployment, TARGET_A.namespace) > 2  # 80 requests on 2 replicas, target 10 per replica
    assert condition(kube, TARGET_A.deployment, "MetricsAvailable", TARGET_A.namespace)["status"] == "True"

    b = report.decisions[f"{TARGET_B.namespace}/{TARGET_B.deployment}"]
    assert b.stale and b.final == 2 and replicas(kube, TARGET_B.deployment, TARGET_B.namespace) == 2
    assert condition(kube, TARGET_B.deployment, "MetricsAvailable", TARGET_B.namespace)["status"] == "False"
