"""The bridge: the simulator's decision path and the controller's reconcile loop decide alike.

A simulated cluster serves a workload. Each control tick its snapshot goes two ways: to the
simulator's decision step (:func:`simulator.evaluation.runner.make_decider`, as ``kis simulate`` and
the evaluation use it), and, as the answer of a stand-in Prometheus reader, to the controller's real
:class:`controller.loop.Reconciler`, which reads the Deployment over HTTP from the API emulator
(whose ready replicas follow the cluster's), decides and patches the scale. The patched replicas
drive the cluster. Every tick both records must agree. With ``minReplicas: 0`` the same run is the
scale 0 -> 1 -> N -> 0 -> 1 of the controller loop, and no request may be lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from controller.loop import Reconciler
from simulator.cluster.build import build_cluster
from simulator.cluster.config import ClusterConfig
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider
from simulator.workloads.workload import Workload
from tests.controller_helpers import NOW, NS, autoscaler, deployment, kube_client, replicas
from tests.kube_emulator import KubeEmulator
from tests.test_scale_to_zero import bursts_with_silence, timeline_phases

ACTIVATION = "sum(kis_gateway_pending_requests{{sel}})"


class SimulatedPrometheus:
    """The reader's interface, answering the cluster's current snapshot for every target."""

    def __init__(self) -> None:
        self.snapshot: dict[str, float] = {}
        self.queries: list[Any] = []

    def read(self, targets: Any, *, time_s: float | None = None) -> dict[str, dict[str, float]]:
        self.queries.append(list(targets))
        return {t.key: dict(self.snapshot) for t in targets}


def cosimulate(workload: Workload, policy: dict[str, Any], *, min_replicas: int, start: int, behavior: dict[str, Any] | None = None,
               interval_s: float = 15.0, limit_s: float = 3600.0):
    """Run the cluster under the controller; return the cluster, both decision lists and the reader."""
    kube = KubeEmulator(auto_ready=False).start()
    try:
        kube.put("deployments", deployment("llm", start))
        kube.set_ready(NS, "llm", start)
        spec: dict[str, Any] = {"minReplicas": min_replicas, "behavior": behavior or {}}
        if min_replicas == 0:
            spec["scaleToZero"] = {"activationQuery": ACTIVATION, "idleSeconds": 300}
        kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": policy["type"], "parameters": {
            k: v for k, v in policy.items() if k != "type"}}, **spec))
        guard = {"scale_to_zero_idle_s": 300.0, **{_snake(k): v for k, v in (behavior or {}).items()}}
        setup = EvaluationSetup(min_replicas=min_replicas, max_replicas=8, interval_s=interval_s)
        sim_step = make_decider(PolicyEntry(policy["type"], policy, guard), setup)
        cluster = build_cluster(ClusterConfig(), workload, initial_replicas=start, rng=np.random.default_rng(0), windows=sim_step.windows)
        prometheus = SimulatedPrometheus()
        reconciler = Reconciler(kube_client(kube), prometheus, interval_s=interval_s)
        sim_records, ctrl_records = [], []
        t = 0.0
        while t < workload.duration_s or (cluster.unserved and t < workload.duration_s + limit_s):
            t += interval_s
            cluster.run_until(t)
            snapshot = cluster.snapshot()
            kube.set_ready(NS, "llm", cluster.ready_replicas)
            prometheus.snapshot = snapshot
            ctrl = reconciler.tick(NOW + t).decisions[f"{NS}/llm"]
            sim = sim_step(snapshot, NOW + t, cluster.desired)
            sim_records.append(sim)
            ctrl_records.append(ctrl)
            cluster.scale(replicas(kube, "llm"))
        cluster.finish()
        return cluster, sim_records, ctrl_records, prometheus
    finally:
        kube.stop()


def _snake(name: str) -> str:
    return {"scaleDownStabilizationSeconds": "scale_down_stabilization_s"}[name]


def decision(record) -> tuple:
    """What a decision is: its value, the proposal, each guard that acted and why."""
    return (record.final, record.proposal, record.reason, record.steps, record.stale, record.policy_reasons)


@pytest.mark.parametrize("policy", [{"type": "hpa", "target": 8}, {"type": "kpa", "target": 8}])
def test_controller_loop_scales_zero_to_n_to_zero_to_n_like_the_simulator(policy):
    workload = bursts_with_silence()
    workload = Workload(workload.arrival_s, workload.prompt_tokens, workload.output_tokens, workload.duration_s, workload.name,
                        start_time_of_day_s=NOW % 86400.0)  # the loop's time of day is the wall clock's
    cluster, sim, ctrl, prometheus = cosimulate(workload, policy, min_replicas=0, start=0)
    for i, (s, c) in enumerate(zip(sim, ctrl)):
        assert decision(s) == decision(c), (i, s.reason, c.reason)
        assert s.inputs == c.inputs, i
    assert cluster.unserved == 0 and cluster.rejected == 0 and len(cluster.finished) == len(workload)
    phases = timeline_phases(cluster.timeline.desired)
    back_to_zero = phases.index("0", 1)
    assert phases[0] == "0" and "N" in phases[1:back_to_zero] and "N" in phases[back_to_zero + 1:], phases
    # The controller asked Prometheus for the activation signal (and the policy's own on-demand signals).
    query = prometheus.queries[-1][0]
    assert query.overrides["gateway_pending"] == ACTIVATION and "replicas_reporting" in query.wants


def test_bridge_agrees_on_a_warm_fleet_with_the_guardrails():
    """A warm start of 3 replicas on the spike pattern, threshold policy, guardrails on."""
    from simulator.workloads.patterns import PatternSpec, generate_pattern

    spec = PatternSpec("spike", duration_s=900.0, base_rate=4.0, peak_rate=20.0, spike_start_s=300.0, spike_length_s=200.0)
    workload = generate_pattern(spec, np.random.default_rng(1), "spike")
    workload = Workload(workload.arrival_s, np.minimum(workload.prompt_tokens, 2000), np.minimum(workload.output_tokens, 300),
                        workload.duration_s, "spike", start_time_of_day_s=NOW % 86400.0)
    policy = {"type": "threshold", "scale_up_tpm": 60_000, "scale_down_tpm": 20_000}
    cluster, sim, ctrl, _ = cosimulate(workload, policy, min_replicas=1, start=3, behavior={"scaleDownStabilizationSeconds": 60})
    assert [s.final for s in sim] == [c.final for c in ctrl]
    assert all(decision(s) == decision(c) for s, c in zip(sim, ctrl))
    assert len({c.final for c in ctrl}) > 2  # it did scale, both ways
