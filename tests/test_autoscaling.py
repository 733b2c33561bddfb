"""The shared decision step: records, staleness, shadow baseline, immutability."""

from __future__ import annotations

import copy
import math

import pytest

from controller.autoscaling import Autoscaler, decide, is_stale
from controller.guardrails import Behavior, GuardState
from controller.policies.registry import build_policy
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider

LOADED = {"requests_running": 60.0, "requests_waiting": 20.0, "replicas_ready": 2.0, "replicas_desired": 2.0, "replicas_starting": 0.0,
          "prompt_token_rate": 8000.0, "generation_token_rate": 1500.0, "request_rate": 12.0,
          "concurrency_stable": 80.0, "concurrency_panic": 80.0}


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
    assert record.final == 3 and record.baseline == 4  # hpa, legacy path: ceil(40/10 * 2) = 8, at most max(2 x 2, 4)
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


def _first_scale_down_after_drop(spec: dict, behavior: Behavior) -> float:
    """Seconds from a load drop at t = 0 to the first decision below the loaded fleet of 6."""
    autoscaler = Autoscaler(build_policy(spec), behavior)
    state, current = autoscaler.initial_state(), 6
    busy = dict(LOADED, requests_running=60.0, requests_waiting=0.0, replicas_ready=6.0, prompt_token_rate=6 * 150_000 / 60,
                generation_token_rate=0.0)
    for t in range(-300, 0, 15):  # a loaded steady state before the drop
        record, state = decide(autoscaler, busy, float(t), current, state)
        assert record.final == current
    idle = dict(busy, requests_running=6.0, prompt_token_rate=6 * 10_000 / 60)
    for t in range(0, 1200, 15):
        record, state = decide(autoscaler, idle, float(t), current, state)
        if record.final < current:
            return float(t)
    raise AssertionError("never scaled down")


def test_a_policy_with_its_own_window_gets_no_second_one():
    """HPA's behavior window (300 s) alone delays the first scale-down; the guardrails add none by default,
    while an explicit guard window still stacks (what a user who sets one asks for)."""
    hpa = {"type": "hpa", "target": 10, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}
    # the last loaded recommendation is at t = -15 and leaves a 300 s window at t = 285 (kube: rec.timestamp.After(cutoff))
    assert _first_scale_down_after_drop(hpa, Behavior(1, 8)) == 285.0
    # an explicit guard window counts from the HPA's last proposal of 6 (t = 270): 270 + 600
    assert _first_scale_down_after_drop(hpa, Behavior(1, 8, scale_down_stabilization_s=600)) == 870.0
    # without behavior, kube's legacy path: its 5-minute window keeps a recommendation at the cutoff, so 300
    assert _first_scale_down_after_drop({"type": "hpa", "target": 10}, Behavior(1, 8)) == 300.0


def test_a_policy_without_a_window_gets_the_default_one():
    threshold = {"type": "threshold", "scale_up_tpm": 200_000, "scale_down_tpm": 50_000}
    assert _first_scale_down_after_drop(threshold, Behavior(1, 8)) == 285.0  # DEFAULT_STABILIZATION_S after t = -15
    assert _first_scale_down_after_drop(threshold, Behavior(1, 8, scale_down_stabilization_s=0)) == 0.0
    assert Autoscaler(build_policy(threshold), Behavior(1, 8)).behavior.scale_down_stabilization_s == 300.0
    assert Autoscaler(build_policy({"type": "kpa", "target": 4}), Behavior(1, 8)).behavior.scale_down_stabilization_s == 0.0


def test_a_signal_the_policy_requires_makes_the_snapshot_stale():
    """An HPA on GPU utilisation: without DCGM's gauge the decision is stale (and holds), even though
    the serving load is there; an HPA on requests decides on the same snapshot."""
    snapshot = {k: v for k, v in LOADED.items() if k != "gpu_utilization"}
    on_gpu = Autoscaler(build_policy({"type": "hpa", "metric": "gpu_utilization", "target": 60}), Behavior(1, 8))
    record, _ = decide(on_gpu, snapshot, 0.0, 2, on_gpu.initial_state())
    assert record.stale and record.final == 2 and "gpu_utilization" in record.policy_reasons[-1]
    on_requests = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8))
    record, _ = decide(on_requests, snapshot, 0.0, 2, on_requests.initial_state())
    assert not record.stale and record.final == 4


def test_first_decision_holds_the_fleet_as_found():
    """The fleet found at the first decision is a recommendation: a fixed policy asking for 2 of 6
    replicas waits one stabilisation window (the same in the simulator and after a controller restart)."""
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 2}), Behavior(1, 8, scale_down_stabilization_s=60))
    record, state = decide(autoscaler, LOADED, 0.0, 6, autoscaler.initial_state())
    assert record.final == 6 and record.steps[-1].guard == "ScaleDownStabilized"
    record, _ = decide(autoscaler, LOADED, 60.0, 6, state)
    assert record.final == 2


# ------------------------------------------------------------------ restart safety
def test_history_is_small_and_names_the_holds():
    """history(): the guardrails' highest recommendation in the window, the last scale direction,
    and the policies' own holds (the HPA's window maximum; the KPA's panic maximum)."""
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8, scale_down_stabilization_s=60),
                            baseline=build_policy({"type": "kpa", "target": 10}))
    state = autoscaler.initial_state()
    assert autoscaler.history(state) == {}
    record, state = decide(autoscaler, LOADED, 0.0, 2, state)  # scale up to 4 (legacy limit)
    history = autoscaler.history(state)
    assert history["hold"] == 4 and history["lastScaleDirection"] == 1
    assert history["policy"] == {"hold": 8}  # the HPA's raw recommendation ceil(40 / 10 x 2)
    assert history["baseline"] == {"maxPanicPods": 8}  # 80 / 10 on 2 ready: panic
    quiet = dict(LOADED, requests_running=1.0, requests_waiting=0.0, concurrency_stable=1.0, concurrency_panic=1.0)
    _, later = decide(autoscaler, quiet, 61.0, 4, state)  # the t=0 recommendation has left the 60 s window
    assert autoscaler.history(later)["hold"] == 8  # the current recommendation: the HPA's own 300 s window still says 8
    _, much_later = decide(autoscaler, quiet, 1000.0, 4, later)
    assert autoscaler.history(much_later)["policy"] == {"hold": 1}


def test_restored_state_seeds_every_hold_at_the_restart():
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8, scale_down_stabilization_s=60),
                            baseline=build_policy({"type": "kpa", "target": 10}))
    history = {"hold": 7, "lastScaleDirection": -1, "policy": {"hold": 6}, "baseline": {"maxPanicPods": 9}}
    state = autoscaler.restored_state(history, 500.0, 5, last_scale_s=450.0)
    guard = state.guard_state
    assert guard.recommendations == ((500.0, 7),) and guard.last_scale_s == 450.0 and guard.last_scale_direction == -1
    assert guard.last_traffic_s == 500.0 and guard.last_decision_s == 500.0
    assert state.policy_state.recommendations == ((500.0, 6),) and state.policy_state.last_replicas == 5
    assert state.policy_state.last_time_s == 500.0 and state.policy_state.events == ()
    assert state.baseline_state.panicking and state.baseline_state.panic_time_s == 500.0
    assert state.baseline_state.max_panic_pods == 5  # in panic again, holding the current 5 (never above 9)


@pytest.mark.parametrize("history", [None, {}, {"hold": "x", "lastScaleDirection": 7, "policy": [], "baseline": {"maxPanicPods": -1}},
                                     {"hold": math.inf, "policy": {"hold": math.nan}}])
def test_restored_state_without_usable_history_holds_the_current_replicas(history):
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8), baseline=build_policy({"type": "kpa", "target": 10}))
    state = autoscaler.restored_state(history, 100.0, 3)
    assert state.guard_state.recommendations == ((100.0, 3),) and state.guard_state.last_scale_direction == 0
    assert state.guard_state.last_scale_s == -math.inf
    assert state.policy_state.recommendations == ((100.0, 3),)
    assert state.baseline_state == build_policy({"type": "kpa", "target": 10}).initial_state()


def test_a_lower_stored_hold_does_not_lower_the_current_replicas():
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8))
    state = autoscaler.restored_state({"hold": 2, "policy": {"hold": 1}}, 0.0, 5)
    assert state.guard_state.recommendations == ((0.0, 5),) and state.policy_state.recommendations == ((0.0, 5),)
    fixed = Autoscaler(build_policy({"type": "fixed", "replicas": 2}), Behavior(1, 8))
    assert fixed.restored_state({"hold": 6}, 0.0, 5).policy_state is None
    assert fixed.history(fixed.initial_state()) == {}


def test_first_state_is_the_fleet_as_found():
    from controller.guardrails import first_state

    assert first_state(10.0, 4) == GuardState(((10.0, 4),), -math.inf, 0, 10.0, 10.0)
    assert first_state(10.0, 4, hold=6, last_scale_s=3.0, last_scale_direction=1) == GuardState(((10.0, 6),), 3.0, 1, 10.0, 10.0)
    assert first_state(10.0, 4, hold=2).recommendations == ((10.0, 4),)


# ------------------------------------------------------------------ small pieces, exactly
def test_autoscaler_checks_its_configuration():
    policy = build_policy({"type": "fixed", "replicas": 1})
    with pytest.raises(ValueError, match=r"^interval_s must be positive, got 0$"):
        Autoscaler(policy, interval_s=0)
    assert Autoscaler(policy, interval_s=0.5).interval_s == 0.5
    with pytest.raises(ValueError, match=r"^stale_rule 'baseline' needs a baseline policy \(Autoscaler\(baseline=\.\.\.\)\)$"):
        Autoscaler(policy, Behavior(stale_rule="baseline"))
    assert Autoscaler(policy, Behavior(stale_rule="baseline"), baseline=policy).baseline is policy
    assert Autoscaler(policy, Behavior(stale_rule="hold")).baseline is None


def test_required_signals_of_a_policy():
    from controller.autoscaling import REQUIRED_SIGNALS, required_signals

    assert required_signals(None) == REQUIRED_SIGNALS == ("requests_running", "requests_waiting")
    assert required_signals(object()) == REQUIRED_SIGNALS  # a policy that declares none

    class Declares:
        required_signals = ("requests_waiting", "gpu_utilization")

    assert required_signals(Declares()) == ("requests_running", "requests_waiting", "gpu_utilization")
    assert is_stale({"requests_running": 1.0, "requests_waiting": 1.0}, ("gpu_utilization",))
    assert not is_stale({"gpu_utilization": 1.0}, ("gpu_utilization",))


def test_with_empty_fleet_fills_only_an_empty_fleet():
    from controller.autoscaling import with_empty_fleet

    empty = {"replicas_ready": 0.0, "replicas_reporting": 0.0, "requests_running": math.nan}
    filled = with_empty_fleet(empty)
    assert filled == {"replicas_ready": 0.0, "replicas_reporting": 0.0, "requests_running": 0.0, "requests_waiting": 0.0,
                      "concurrency_stable": 0.0, "concurrency_panic": 0.0}
    assert with_empty_fleet({"replicas_ready": 0.0, "requests_running": 2.0})["requests_waiting"] == 0.0  # reporting unknown
    complete = {"replicas_ready": 0.0, "replicas_reporting": 0.0, "requests_running": 0.0, "requests_waiting": 0.0,
                "concurrency_stable": 0.0, "concurrency_panic": 0.0}
    assert with_empty_fleet(complete) is complete
    for busy in ({"replicas_ready": 1.0, "replicas_reporting": 0.0}, {"replicas_ready": 0.0, "replicas_reporting": 1.0}, {}):
        assert with_empty_fleet(busy) is busy


def test_one_request_in_flight_is_traffic():
    from controller.autoscaling import has_traffic

    quiet = {"requests_running": 0.0, "requests_waiting": 0.0, "request_rate": 0.0}
    assert not has_traffic(quiet) and not has_traffic({**quiet, "request_rate": math.nan})
    assert has_traffic({**quiet, "requests_waiting": 1.0}) and has_traffic({**quiet, "request_rate": 0.01})
    assert has_traffic({**quiet, "gateway_pending": 1.0}) and not has_traffic({**quiet, "gateway_pending": 0.0})


def test_the_record_explains_staleness_exactly():
    autoscaler = Autoscaler(build_policy({"type": "hpa", "target": 10}), Behavior(1, 8))
    record, _ = decide(autoscaler, {"replicas_ready": 2.0, "request_rate": math.nan, "note": "text"}, 0.0, 2, autoscaler.initial_state())
    assert record.policy_reasons[-1] == "stale: requests_running, requests_waiting missing"
    assert record.inputs == {"replicas_ready": 2.0}  # NaN and non-numbers are left out of the record
    fresh, _ = decide(autoscaler, LOADED, 0.0, 2, autoscaler.initial_state())
    assert not any(r.startswith("stale") for r in fresh.policy_reasons)


def test_stale_baseline_rule_takes_the_baseline_proposal_through_decide():
    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 1}), Behavior(1, 8, stale_rule="baseline"),
                            baseline=build_policy({"type": "fixed", "replicas": 6}))
    record, _ = decide(autoscaler, {"replicas_ready": 2.0}, 0.0, 2, autoscaler.initial_state())
    assert record.stale and record.final == 6 and record.baseline == 6 and record.steps[0].guard == "StaleMetricsBaseline"


def test_a_scale_time_known_before_the_first_decision_still_cools_down():
    """The loop sets the last applied scale time on a state before its first decision: the cooldown counts from it."""
    import dataclasses

    autoscaler = Autoscaler(build_policy({"type": "fixed", "replicas": 6}), Behavior(1, 8, cooldown_up_s=60))
    state = autoscaler.initial_state()
    state = dataclasses.replace(state, guard_state=dataclasses.replace(state.guard_state, last_scale_s=-30.0))
    record, _ = decide(autoscaler, LOADED, 0.0, 2, state)
    assert record.final == 2 and record.steps[-1].guard == "Cooldown"
    record, _ = decide(autoscaler, LOADED, 0.0, 2, autoscaler.initial_state())
    assert record.final == 6


def test_the_policy_sees_the_autoscalers_context():
    from controller.policies.base import PolicyContext

    seen: list[PolicyContext] = []

    class Spy:
        name = "spy"

        def initial_state(self):
            return None

        def decide(self, snapshot, ctx, state):
            seen.append(ctx)
            return build_policy({"type": "fixed", "replicas": 3}).decide(snapshot, ctx, state)

    from controller.slo import SLO

    slo = SLO(0.3, 0.04)
    autoscaler = Autoscaler(Spy(), Behavior(2, 7), slo, interval_s=30.0)
    decide(autoscaler, LOADED, 12.0, 4, autoscaler.initial_state())
    assert seen == [PolicyContext(12.0, 4, 2, 7, slo, 30.0)]


def test_history_of_policies_without_a_dump_and_a_rising_direction():
    class Counting:
        name = "counting"

        def initial_state(self):
            return 0

        def decide(self, snapshot, ctx, state):
            return build_policy({"type": "fixed", "replicas": 3}).decide(snapshot, ctx, None)[0], state + 1

    autoscaler = Autoscaler(Counting(), Behavior(1, 8))
    _, state = decide(autoscaler, LOADED, 0.0, 2, autoscaler.initial_state())
    assert autoscaler.history(state) == {"hold": 3, "lastScaleDirection": 1}  # no "policy": it has no dump_state
    restored = autoscaler.restored_state({"lastScaleDirection": 1}, 10.0, 3)
    assert restored.guard_state.last_scale_direction == 1 and restored.policy_state == 0
