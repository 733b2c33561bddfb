"""Scale to and from zero in the simulator: 0 -> 1 -> N -> 0 -> 1 -> N, through decide(), no request lost.

Activation is KEDA's ``activationThreshold`` and Knative's activator: the requests the gateway holds
while no replica is Ready (``gateway_pending``) bring the first replica; the last one goes only after
an idle period without traffic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.autoscaling import Autoscaler, decide
from controller.guardrails import Behavior
from controller.policies.registry import build_policy
from simulator.cluster.config import ClusterConfig
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider
from simulator.runner import simulate
from simulator.workloads.workload import Workload


def bursts_with_silence(seed: int = 0) -> Workload:
    """Two bursts of traffic with a 20-minute silence between them (the issue's shape)."""
    rng = np.random.default_rng(seed)
    arrivals = []
    for start, length, rate in ((30.0, 240.0, 6.0), (1500.0, 240.0, 6.0)):
        n = rng.poisson(rate * length)
        arrivals.append(np.sort(rng.uniform(start, start + length, n)))
    t = np.concatenate(arrivals)
    prompts = rng.integers(200, 800, len(t))
    outputs = rng.integers(50, 200, len(t))
    return Workload(t, prompts, outputs, duration_s=1800.0, name="bursts-20min-silence")


def timeline_phases(desired: list[int]) -> list[str]:
    """Collapse the desired replicas into the phases 0, 1 and N (>= 2) in order."""
    phases: list[str] = []
    for d in desired:
        phase = "0" if d == 0 else "1" if d == 1 else "N"
        if not phases or phases[-1] != phase:
            phases.append(phase)
    return phases


@pytest.mark.parametrize("policy", [
    {"type": "kpa", "target": 8},
    {"type": "hpa", "target": 8},
    {"type": "threshold", "scale_up_tpm": 60_000, "scale_down_tpm": 10_000},
])
def test_zero_to_n_and_back_twice_serves_every_request(policy):
    workload = bursts_with_silence()
    setup = EvaluationSetup(min_replicas=0, max_replicas=8, initial_replicas=0)
    behavior = {"scale_to_zero_idle_s": 300.0}
    if policy["type"] == "threshold":  # one step down per decision; the guard's 300 s window would make it one per 5 min
        behavior["scale_down_stabilization_s"] = 60.0
    entry = PolicyEntry(policy["type"], policy, behavior=behavior)
    result = simulate(workload, ClusterConfig(), replicas=0, decide=make_decider(entry, setup), seed=0)
    assert result.unserved == 0 and result.rejected == 0
    assert len(result.requests) == len(workload)  # every request was served, none dropped
    phases = timeline_phases(result.timeline.desired)
    # Zero at the start; out to N under the first burst; back to zero in the silence (after the idle
    # period); out again under the second burst.
    back_to_zero = phases.index("0", 1)
    assert phases[0] == "0" and "N" in phases[1:back_to_zero] and "N" in phases[back_to_zero + 1:], phases
    activations = [d for d in result.decisions if d.current_replicas == 0 and d.final > 0]
    assert len(activations) == 2 and all(d.inputs["gateway_pending"] >= 1 for d in activations)
    if policy["type"] != "kpa":  # the activation step: one replica (Knative's KPA sizes from the activator's queue)
        assert [d.final for d in activations] == [1, 1] and all(d.steps[-1].guard == "Activation" for d in activations)
    # The last replica went only after the idle period: no traffic in the 300 s before it.
    to_zero = next(d for d in result.decisions if d.current_replicas > 0 and d.final == 0)
    last_busy = max(t for t in workload.arrival_s if t < to_zero.time_s)
    assert to_zero.time_s - last_busy >= 300.0


def test_the_idle_period_holds_the_last_replica():
    """With traffic 100 s ago and a 300 s idle period, a proposal of 0 keeps 1 replica."""
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 0}), Behavior(0, 4, scale_down_stabilization_s=0, scale_to_zero_idle_s=300.0))
    busy = {"requests_running": 3.0, "requests_waiting": 0.0, "replicas_ready": 1.0}
    idle = {"requests_running": 0.0, "requests_waiting": 0.0, "request_rate": 0.0, "replicas_ready": 1.0}
    _, state = decide(autoscaler, busy, 0.0, 1, autoscaler.initial_state())
    record, state = decide(autoscaler, idle, 100.0, 1, state)
    assert record.final == 1 and record.steps[-1].guard == "ScaleToZeroIdle"
    record, state = decide(autoscaler, idle, 299.0, 1, state)
    assert record.final == 1
    record, _ = decide(autoscaler, idle, 300.0, 1, state)  # exactly the idle period: allowed
    assert record.final == 0 and record.reason.startswith("ScaleDown")


def test_completed_requests_and_unknown_load_count_as_traffic():
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 0}), Behavior(0, 4, scale_down_stabilization_s=0, scale_to_zero_idle_s=60.0))
    quiet = {"requests_running": 0.0, "requests_waiting": 0.0, "request_rate": 0.0, "replicas_ready": 1.0}
    # The first decision starts the idle clock: a controller starting over a fleet knows nothing of its past.
    record, state = decide(autoscaler, quiet, 0.0, 1, autoscaler.initial_state())
    assert record.final == 1 and record.steps[-1].guard == "ScaleToZeroIdle" and state.guard_state.last_traffic_s == 0.0
    for snapshot in ({**quiet, "request_rate": 0.2}, {**quiet, "requests_running": math.nan}, {**quiet, "gateway_pending": 1.0}):
        _, later = decide(autoscaler, snapshot, 30.0, 1, state)
        assert later.guard_state.last_traffic_s == 30.0
    _, later = decide(autoscaler, quiet, 30.0, 1, state)
    assert later.guard_state.last_traffic_s == 0.0


def test_activation_threshold_and_the_empty_fleet():
    """At zero replicas Prometheus has no serving series: the sums are 0, not stale, and the
    activation step scales to one only above the threshold, even during a cooldown."""
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 8}), Behavior(0, 4, cooldown_up_s=600, activation_threshold=2))
    empty = {"replicas_ready": 0.0, "replicas_reporting": 0.0, "requests_running": math.nan, "requests_waiting": math.nan}
    state = autoscaler.initial_state()
    record, state = decide(autoscaler, {**empty, "gateway_pending": 2.0}, 0.0, 0, state)
    assert record.final == 0 and not record.stale
    record, state = decide(autoscaler, {**empty, "gateway_pending": 3.0}, 15.0, 0, state)
    assert record.final == 1 and record.steps[-1].guard == "Activation" and not record.stale
    # With pods reporting, missing sums are stale again (a broken query must not read as zero load).
    record, _ = decide(autoscaler, {**empty, "replicas_ready": 1.0, "replicas_reporting": 1.0}, 30.0, 1, state)
    assert record.stale and record.final == 1
