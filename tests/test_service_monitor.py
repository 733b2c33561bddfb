"""The chart's ServiceMonitor keeps the controller's `namespace` label: scraped by a real Prometheus the way it says.

The Prometheus Operator turns a ServiceMonitor endpoint into a scrape job
whose target labels include the Service's ``namespace`` and ``pod``; its
``honorLabels`` becomes the job's ``honor_labels``. The controller's series
carry the autoscaler's own ``namespace`` (``serving`` here, the controller
runs in ``kis-system``). Without honorLabels Prometheus renames that one
``exported_namespace``, and the alerts and panels keyed on ``namespace`` go
empty; the equivalent scrape job reproduces it.
"""

from __future__ import annotations

import pytest

from controller.decision import DecisionRecord
from controller.server import ControllerStatus, create_app, run_server_in_thread
from controller.telemetry import ControllerMetrics
from tests.prom_harness import prometheus_binary, start_prometheus
from tests.test_helm_chart import VARIANTS, render

pytestmark = [pytest.mark.prometheus, pytest.mark.helm,
              pytest.mark.skipif(prometheus_binary() is None, reason="needs the prometheus binary")]
TARGET_LABELS = {"namespace": "kis-system", "pod": "kis-s-7c9d-abcde", "service": "kis-s", "endpoint": "http", "container": "controller"}


def test_service_monitor_keeps_the_autoscalers_namespace(tmp_path):
    (monitor,) = [o for o in render(VARIANTS["full"]) if o["kind"] == "ServiceMonitor"]
    honor = monitor["spec"]["endpoints"][0].get("honorLabels", False)
    assert honor is True
    metrics = ControllerMetrics()
    metrics.set_stale("serving", "llm", True)
    metrics.observe_decision("serving", "llm", DecisionRecord(time_s=0.0, policy="hpa", current_replicas=4, proposal=9, final=4, reason="AboveMax"))
    server = run_server_in_thread(create_app(ControllerStatus(), metrics), port=0)
    try:
        with start_prometheus(tmp_path) as prom:
            address = server.url.removeprefix("http://")
            prom.add_scrape_target(address, TARGET_LABELS, wait=False, honor_labels=honor)  # the chart's ServiceMonitor
            prom.add_scrape_target(address, TARGET_LABELS, wait=False, honor_labels=False)  # the same without honorLabels
            prom.wait_until('count(up{job=~"extra.*"} == 1) == 2', bool, 30)
            stale = "max by (namespace, autoscaler) (kis_controller_metrics_stale) == 1"  # KisStaleMetrics
            with_honor = prom.query('max by (namespace, autoscaler) (kis_controller_metrics_stale{job="extra"}) == 1')
            assert [r["metric"] for r in with_honor] == [{"namespace": "serving", "autoscaler": "llm"}], stale
            (renamed,) = prom.query('kis_controller_metrics_stale{job="extra-target-labels"}')
            assert renamed["metric"]["namespace"] == "kis-system" and renamed["metric"]["exported_namespace"] == "serving"
            assert prom.query('kis_controller_desired_replicas{job="extra-target-labels", namespace="serving"}') == []  # the bug, reproduced
    finally:
        server.stop()
