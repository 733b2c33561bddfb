"""The shared decision step: records, staleness, shadow baseline, immutability."""

from __future__ import annotations

import copy
import math

import pytest

from controller.autoscaling import Autoscaler, decide, is_stale
from controller.guardrails import Behavior
from controller.policies.registry import build_policy
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider

LOADED = {"requests_running": 60.0, "requests_waiting": 20.0, "replicas_ready": 2.0, "replicas_desired": 2.0, "replicas_starting": 0.0,
          "prompt_token_rate": 8000.0, "generation_token_rate": 1500.0, "request_rate": 12.0}


@pytest.mark.parametrize("spec", [
    {"type": "hpa", "target": 10}, {"type": "threshold", "scale_up_tpm": 100_000, "scale_down_tpm": 20_000},
    {"type": "kpa", "target": 10}, {"type": "fixed", "replicas": 5},
])
def test_every_policy_scales_a_loaded_target_up_with_a_full_record(spec):
    autoscaler = Autoscaler(build_policy(spec), Behavior(1, 8))
    record, _ = decide(autoscaler, LOADED, 30.0, 2, autoscaler.initial_state())
    assert record.final > 2 and record.proposal is not None
    assert record.reason.startswith(("ScaleUp", "ScaleUpLimit", "AboveMax"))
    assert record.policy == spec["type"] and record.policy_reasons
    assert record.inputs["requests_running"] == 60.0 and not record.stale


def test_stale_snapshot_never_scales_down():
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 1}), Behavior(1, 8, stale_rule="hold"))
    record, _ = decide(autoscaler, {"requests_running": math.nan, "replicas_ready": 4.0}, 0.0, 4, autoscaler.initial_state())
    assert record.stale and record.final == 4 and record.reason.startswith("StaleMetricsHold")
    assert is_stale({"requests_running": 1.0, "requests_waiting": math.inf})
    assert not is_stale({"requests_running": 1.0, "requests_waiting": 0.0})


def test_shadow_baseline_is_computed_side_by_side():
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 3}), Behavior(1, 8), baseline=build_policy({"type": "hpa", "target": 10}))
    record, state = decide(autoscaler, LOADED, 0.0, 2, autoscaler.initial_state())
    assert record.final == 3 and record.baseline == 6  # hpa: ceil(40/10 * 2) = 8, limited to 2 + 4
    assert state.baseline_state is not None


def test_decide_does_not_mutate_its_inputs():
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8))
    state = autoscaler.initial_state()
    snapshot = dict(LOADED)
    before_state, before_snapshot = copy.deepcopy(state), copy.deepcopy(snapshot)
    decide(autoscaler, snapshot, 15.0, 2, state)
    assert state == before_state and snapshot == before_snapshot


def test_simulator_decider_and_direct_calls_agree():
    """The simulator's decide closure is the controller's decide, state threaded the same way."""
    entry = PolicyEntry("hpa", {"type": "hpa", "target": 10})
    setup = EvaluationSetup(max_replicas=8)
    step = make_decider(entry, setup)
    autoscaler = Autoscaler(build_policy(entry.spec), Behavior(min_replicas=1, max_replicas=8), setup.slo, setup.interval_s)
    state = autoscaler.initial_state()
    current = 2
    for t, load in enumerate([80, 80, 10, 10, 10, 200, 5]):
        snapshot = dict(LOADED, requests_running=float(load), replicas_ready=float(current))
        via_sim = step(snapshot, 15.0 * t, current)
        direct, state = decide(autoscaler, snapshot, 15.0 * t, current, state)
        assert via_sim == direct
        current = direct.final
