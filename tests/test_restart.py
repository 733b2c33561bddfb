"""Restart safety: a controller restart (or a new leader) in the middle of a scale-down keeps the fleet.

Each test runs the real reconcile loop against the API emulator over HTTP, throws the Reconciler away
mid-way (its in-memory state with it) and starts a new one on the same cluster. The new one seeds its
policy and guardrail state from the Deployment's replicas and the history in the autoscaler's status.
"""

from __future__ import annotations

from tests.controller_helpers import NOW, NS, FakeReader, autoscaler, deployment, reconciler, replicas
from tests.kube_emulator import KubeEmulator, kube  # noqa: F401 (fixture)

QUIET = {"requests_running": 1.0, "requests_waiting": 0.0, "request_rate": 1.0, "prompt_token_rate": 10.0, "generation_token_rate": 10.0,
         "concurrency_stable": 1.0, "concurrency_panic": 1.0}


def history(kube: KubeEmulator) -> dict:
    return kube.get("inferenceautoscalers", NS, "llm")["status"]["history"]


def test_restart_during_the_stabilization_window_keeps_the_fleet(kube):
    """The guardrails hold 8 replicas for 300 s after the policy asks for 2; a restart 100 s in must
    not start from an empty history (which would shed 6 replicas at once)."""
    kube.put("deployments", deployment("llm", 8))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 8}}))
    first = reconciler(kube, FakeReader(QUIET))
    first.tick(NOW)
    obj = kube.get("inferenceautoscalers", NS, "llm")
    obj["spec"]["policy"]["parameters"]["replicas"] = 2
    kube.put("inferenceautoscalers", obj)
    for t in (15, 30, 45, 60, 75, 90):
        record = first.tick(NOW + t).decisions[f"{NS}/llm"]
        assert record.proposal == 2 and record.final == 8 and record.steps[-1].guard == "ScaleDownStabilized"
    assert history(kube)["main"]["hold"] == 8

    second = reconciler(kube, FakeReader(QUIET))  # the restart: nothing in memory
    for t in range(100, 400, 15):  # the hold restarts with the controller: a whole window from t=100
        record = second.tick(NOW + t).decisions[f"{NS}/llm"]
        assert record.final == 8 and replicas(kube, "llm") == 8, (t, record.reason)
    assert second.tick(NOW + 400).decisions[f"{NS}/llm"].final == 2  # then the scale-down goes ahead


def test_a_fresh_controller_over_a_busy_fleet_does_not_shed_it_at_once(kube):
    """Without any history (a new controller, a wiped status) the current replicas are the first
    recommendation, as the HPA's recordInitialRecommendation does."""
    kube.put("deployments", deployment("llm", 6))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "threshold", "parameters": {"scaleUpTpm": 100000, "scaleDownTpm": 50000}}))
    rec = reconciler(kube, FakeReader(QUIET))
    finals = [rec.tick(NOW + t).decisions[f"{NS}/llm"].final for t in (0, 15, 150, 285)]
    assert finals == [6, 6, 6, 6]
    assert rec.tick(NOW + 300).decisions[f"{NS}/llm"].final == 5  # one window later: the threshold's step down


def test_kpa_restart_over_eight_ready_pods_keeps_eight(kube):
    """The issue's case: 8 ready pods at low load. Knative starts a new autoscaler in panic with
    maxPanicPods = 8; the fleet stays until the panic ends a stable window later."""
    kube.put("deployments", deployment("llm", 8))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "kpa", "parameters": {"target": 10}},
                                                behavior={"scaleDownStabilizationSeconds": 0}))
    rec = reconciler(kube, FakeReader(QUIET))
    finals = [rec.tick(NOW + t).decisions[f"{NS}/llm"].final for t in (0, 15, 30, 45, 60)]
    assert finals == [8, 8, 8, 8, 8] and replicas(kube, "llm") == 8
    assert history(kube)["main"]["policy"] == {"maxPanicPods": 8}
    # A restart while in panic: in panic again, holding the 8.
    again = reconciler(kube, FakeReader(QUIET))
    assert [again.tick(NOW + t).decisions[f"{NS}/llm"].final for t in (61, 75, 120)] == [8, 8, 8]
    # 61 + 60 < 135: the panic is over; ceil(1 / 10) = 1 floored at floor(8 / 2) = 4.
    assert again.tick(NOW + 135).decisions[f"{NS}/llm"].final == 4


def test_hpa_restart_keeps_its_stabilization_hold(kube):
    """The HPA's own 5-minute window survives a restart through the status."""
    kube.put("deployments", deployment("llm", 8))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "hpa", "parameters": {"target": 10}},
                                                behavior={"scaleDownStabilizationSeconds": 0}))
    busy = {**QUIET, "requests_running": 80.0}
    rec = reconciler(kube, FakeReader(busy))
    assert rec.tick(NOW).decisions[f"{NS}/llm"].final == 8
    rec.reader = FakeReader(QUIET)
    assert rec.tick(NOW + 15).decisions[f"{NS}/llm"].final == 8  # raw ceil(0.1 x 8) = 1, held at 8
    assert history(kube)["main"]["policy"] == {"hold": 8}
    again = reconciler(kube, FakeReader(QUIET))
    # The legacy window keeps the recommendation at its cutoff: t=400 still holds, t=415 does not.
    assert [again.tick(NOW + t).decisions[f"{NS}/llm"].final for t in (100, 250, 400)] == [8, 8, 8]
    assert again.tick(NOW + 415).decisions[f"{NS}/llm"].final == 1
