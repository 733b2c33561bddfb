"""The KPA policy against Knative's own test cases.

Ported from knative/serving ``pkg/autoscaler/scaling/autoscaler_test.go`` with their numbers: the
harness there (``newTestAutoscaler``) uses PanicThreshold 2, MaxScaleUpRate 10, MaxScaleDownRate 10,
a 60 s stable window, a reachable revision and one ready pod; a fake metric client hands ``Scale`` the
stable and panic concurrency directly, as :func:`knative_scale` takes them here. The excess burst
capacity is not modelled (KIS-S has no activator in the request path to steer). Times advance
explicitly from zero; the arithmetic is in the comments.
"""

from __future__ import annotations

import math

import pytest

from controller.policies.base import PolicyContext
from controller.policies.kpa import KpaPolicy, KpaState, knative_scale


def harness(target: float, **changes) -> KpaPolicy:
    """``newTestAutoscaler``'s DeciderSpec."""
    return KpaPolicy(target=target, **{"max_scale_up_rate": 10.0, "max_scale_down_rate": 10.0, **changes})


class Scaler:
    """An autoscaler created with ``ready`` pods (``New``), then ``Scale`` at explicit times."""

    def __init__(self, kpa: KpaPolicy, ready: int = 1) -> None:
        self.kpa, self.ready, self.state = kpa, ready, kpa.start(ready, 0.0)

    def scale(self, stable: float, panic: float, now: float = 0.0) -> int:
        desired, self.state, _ = knative_scale(self.kpa, stable, panic, self.ready, now, self.state)
        return desired


# ------------------------------------------------------------- autoscaler_test.go
def test_stable_mode_increase_with_concurrency_default():
    """TestAutoscalerStableModeIncreaseWithConcurrencyDefault: 50 / 10 -> 5, then 100 / 10 -> 10."""
    a = Scaler(harness(10))
    assert a.scale(50, 10) == 5
    assert a.scale(100, 10) == 10


def test_unpanic_after_slow_increase():
    """TestAutoscalerUnpanicAfterSlowIncrease."""
    a = Scaler(harness(1))
    a.ready = 10
    # panic 25 / 10 ready = 2.5 >= 2: panic at t=0 with 25 pods.
    assert a.scale(11, 25, now=0) == 25 and a.state.panic_time_s == 0
    # Half the stable window later, 40 ready, panic 41: 41 / 40 < 2, the panic time does not move.
    a.ready = 40
    assert a.scale(30, 41, now=30) == 41 and a.state.panic_time_s == 0
    # At 30 + 30 + 2 (tickInterval): 0 + 60 < 62, panic ends: the stable 50.
    a.ready = 55
    assert a.scale(50, 56, now=62) == 50 and not a.state.panicking


def test_extend_panic_window():
    """TestAutoscalerExtendPanicWindow: still surging (80 / 40 >= 2) moves the panic time."""
    a = Scaler(harness(1))
    a.ready = 10
    assert a.scale(11, 25, now=0) == 25 and a.state.panic_time_s == 0
    a.ready = 40
    assert a.scale(30, 80, now=30) == 80 and a.state.panic_time_s == 30


def test_stable_mode_decrease():
    """TestAutoscalerStableModeDecrease: 8 ready, 100 -> 10, then 50 -> 5."""
    a = Scaler(harness(10))
    a.ready = 8
    assert a.scale(100, 100) == 10
    assert a.scale(50, 50) == 5


def test_stable_mode_no_traffic_scale_to_zero():
    """TestAutoscalerStableModeNoTrafficScaleToZero: ceil(1 / 10) = 1, then ceil(0 / 10) = 0
    (floor(1 / 10) = 0 allows it)."""
    a = Scaler(harness(10))
    assert a.scale(1, 0) == 1
    assert a.scale(0, 0) == 0


def test_activation_scale():
    """TestAutoscalerActivationScale: no traffic stays 0; any traffic gives at least 2."""
    a = Scaler(harness(10, activation_scale=2))
    assert a.scale(0, 0) == 0
    assert a.scale(1, 0) == 2


def test_panic_mode_exponential_track_and_stabilize():
    """TestAutoscalerPanicModeExponentialTrackAndStabilize: each scale brings concurrency back to the
    target (1) and traffic grows 6x; it stabilises at 1296."""
    a = Scaler(harness(1))
    assert a.scale(6, 6, now=0) == 6
    a.ready = 6
    assert a.scale(36, 36, now=10) == 36 and a.state.panic_time_s == 10
    a.ready = 36
    assert a.scale(216, 216, now=11) == 216 and a.state.panic_time_s == 11
    a.ready = 216
    assert a.scale(1296, 1296, now=11) == 1296 and a.state.panic_time_s == 11
    a.ready = 1296
    assert a.scale(1296, 1296, now=12) == 1296


@pytest.mark.parametrize(("label", "target", "stable", "panic", "ready", "prep", "changes", "want"), [
    ("AutoscalerNoDataAtZeroNoAutoscale", 10, 0, 0, 1, None, {}, 0),
    ("AutoscalerStableModeUnlimitedTBC", 181, 21, 26, 1, None, {}, 1),
    ("Autoscaler0TBC", 10, 50, 49, 1, None, {}, 5),
    ("AutoscalerStableModeNoChange", 10, 50, 50, 1, None, {}, 5),
    # In panic (since 5 s ago, max 5 pods) the larger window wins: the stable 50 here ...
    ("AutoscalerPanicStableLargerThanPanic", 1, 50, 30, 5, (-5, 5), {}, 50),
    # ... and the panic 30 here.
    ("AutoscalerPanicStableLessThanPanic", 1, 20, 30, 5, (-5, 5), {}, 30),
    ("AutoscalerStableModeNoChangeAlreadyScaled", 10, 50, 50, 5, None, {}, 5),
    # MaxScaleUpRate 1.1 on 2 pods: ceil(2.2) = 3 still allows the 3 pods needed.
    ("AutoscalerStableModeIncreaseWithSmallScaleUpRate", 1, 3, 3.1, 2, None, {"max_scale_up_rate": 1.1}, 3),
    # MaxScaleDownRate 1.1 on 100 pods: floor(100 / 1.1) = 90.
    ("AutoscalerStableModeDecreaseWithSmallScaleDownRate", 10, 1, 1, 100, None, {"max_scale_down_rate": 1.1}, 90),
    # Panic: 100 / 10 = 10 pods, 10 / 1 >= 2.
    ("AutoscalerPanicModeDoublePodCount", 10, 50, 100, 1, None, {}, 10),
])
def test_autoscaler_scale_table(label, target, stable, panic, ready, prep, changes, want):
    """TestAutoscalerScale (the reachable cases)."""
    a = Scaler(harness(target, **changes))
    a.ready = ready
    if prep is not None:
        a.state = KpaState(True, float(prep[0]), prep[1])
    assert a.scale(stable, panic) == want, label


def test_panic_then_unpanic_scale_down():
    """TestAutoscalerPanicThenUnPanicScaleDown."""
    a = Scaler(harness(10))
    assert a.scale(100, 100, now=0) == 10
    a.ready = 10
    assert a.scale(100, 1000, now=1) == 100  # panic: 1000 / 10 = 100 pods
    assert a.scale(1, 1, now=31) == 100  # traffic dropped, still in panic
    assert a.scale(1, 1, now=62) == 1  # 1 + 60 < 62: stable again; floor(10 / 10) = 1


def test_rate_limit_scale_up_and_down():
    """TestAutoscalerRateLimitScaleUp and TestAutoscalerRateLimitScaleDown: x10 and /10 per decision."""
    up = Scaler(harness(10))
    assert up.scale(1000, 1001) == 10
    up.ready = 10
    assert up.scale(1000, 1001) == 100
    down = Scaler(harness(10))
    down.ready = 100
    assert down.scale(1, 1) == 10
    down.ready = 10
    assert down.scale(1, 1) == 1


def test_use_one_pod_as_minimum_if_endpoints_not_found():
    """TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound: 0 ready counts as 1, so at most 10."""
    a = Scaler(harness(10))
    a.ready = 0
    assert a.scale(1000, 888) == 10


@pytest.mark.parametrize("ready", [0, 1])
def test_start_in_panic_mode_only_above_one_pod(ready):
    """TestStartInPanicMode: created at 0 or 1 pods, no panic and maxPanicPods = ready ..."""
    state = KpaPolicy(target=100).start(ready, 0.0)
    assert not state.panicking and state.max_panic_pods == ready


def test_start_in_panic_mode_at_two_pods():
    """... created at 2 pods, in panic with maxPanicPods 2."""
    state = KpaPolicy(target=100).start(2, 0.0)
    assert state.panicking and state.max_panic_pods == 2


# ------------------------------------------------------------------ the policy
def ctx(now: float, current: int) -> PolicyContext:
    return PolicyContext(now_s=now, current_replicas=current, min_replicas=0, max_replicas=1000)


def snap(stable: float, panic: float, ready: int, pending: float = 0.0) -> dict[str, float]:
    return {"concurrency_stable": stable, "concurrency_panic": panic, "replicas_ready": float(ready), "gateway_pending": pending}


def test_a_restart_over_eight_ready_pods_keeps_them():
    """The issue's case: 8 ready pods at low load. A fresh KPA (a controller restart) starts in panic
    with maxPanicPods 8 and holds 8 until the panic ends a stable window later, instead of halving."""
    kpa = KpaPolicy(target=10)
    state = kpa.initial_state()
    out = []
    for now in (0, 15, 30, 45, 60, 75):
        proposal, state = kpa.decide(snap(5, 5, 8), ctx(now, 8), state)
        out.append(proposal.replicas)
    # Stable: ceil(5 / 10) = 1, floored at floor(8 / 2) = 4. Panic since 0 ends when 0 + 60 < now.
    assert out == [8, 8, 8, 8, 8, 4]


def test_requests_held_at_the_gateway_count_as_concurrency():
    """At zero pods, 25 requests held at the gateway: ceil(25 / 10) = 3 pods (ready counts as 1, so at
    most ceil(1000 x 1)); 3 / 1 >= 2 -> panic, as Knative does when its activator reports a burst."""
    kpa = KpaPolicy(target=10)
    proposal, state = kpa.decide(snap(0, 0, 0, pending=25), ctx(0, 0), kpa.initial_state())
    assert proposal.replicas == 3 and state.panicking


def test_scale_to_zero_waits_for_the_grace_period():
    """handleScaleToZero: zero is wanted from t=0; one pod stays until 30 s of it."""
    kpa = KpaPolicy(target=10, scale_to_zero_grace_s=30)
    state, out = kpa.initial_state(), []
    for now in (0, 15, 29, 30):
        proposal, state = kpa.decide(snap(0, 0, 1), ctx(now, 1), state)
        out.append(proposal.replicas)
    assert out == [1, 1, 1, 0]
    # Traffic in between resets the clock.
    proposal, state = kpa.decide(snap(3, 3, 1), ctx(45, 1), state)
    assert proposal.replicas == 1 and state.zero_since_s is None


def test_no_data_is_an_invalid_result():
    """TestAutoscalerNoDataNoAutoscale: no concurrency -> ScaleValid false (a proposal of None)."""
    kpa = KpaPolicy(target=10)
    proposal, state = kpa.decide({"concurrency_stable": math.nan, "concurrency_panic": 1.0, "replicas_ready": 2.0}, ctx(0, 2),
                                 kpa.initial_state())
    assert not proposal.valid and state.started and state.max_panic_pods == 2


def test_windows_and_signals():
    kpa = KpaPolicy(target=10, stable_window_s=120, panic_window_s=12)
    assert kpa.windows == {"stable_window": 120, "panic_window": 12}
    assert set(kpa.required_signals) == {"concurrency_stable", "concurrency_panic"}


def test_invalid_parameters():
    with pytest.raises(ValueError, match="target"):
        KpaPolicy(target=0)
    with pytest.raises(ValueError, match="panic_window_s"):
        KpaPolicy(target=1, panic_window_s=120)
    with pytest.raises(ValueError, match="exceed 1"):
        KpaPolicy(target=1, panic_threshold=1.0)
    with pytest.raises(ValueError, match="activation_scale"):
        KpaPolicy(target=1, activation_scale=0)


def test_panic_starts_exactly_at_the_threshold():
    """isOverPanicThreshold is dppc / ready >= PanicThreshold: 40 / 10 = 4 pods on 2 ready is 2.0, panic."""
    a = Scaler(harness(10))
    a.ready = 2
    assert a.scale(10, 40, now=0) == 4 and a.state.panicking
    b = Scaler(harness(10))
    b.ready = 2
    assert b.scale(10, 30, now=0) == 1 and not b.state.panicking  # 3 pods on 2 ready is 1.5: stable, ceil(10 / 10) = 1


def test_panic_ends_only_after_a_whole_stable_window():
    """Un-panic when panicTime + StableWindow is before now: at exactly +60 s the panic still holds."""
    a = Scaler(harness(10))
    a.ready = 2
    a.scale(10, 40, now=0)
    a.ready = 4
    assert a.scale(10, 10, now=60) == 4 and a.state.panicking
    assert a.scale(10, 10, now=61) == 1 and not a.state.panicking


def test_parameter_bounds_and_messages():
    assert KpaPolicy(target=1, panic_window_s=60, stable_window_s=60).panic_window_s == 60  # equal windows are allowed
    assert KpaPolicy(target=1, panic_window_s=0.5).panic_window_s == 0.5
    assert KpaPolicy(target=1, scale_to_zero_grace_s=0).scale_to_zero_grace_s == 0
    with pytest.raises(ValueError, match=r"^need 0 < panic_window_s <= stable_window_s, got 0, 60.0$"):
        KpaPolicy(target=1, panic_window_s=0)
    message = r"^panic_threshold, max_scale_up_rate and max_scale_down_rate must exceed 1$"
    for name in ("panic_threshold", "max_scale_up_rate", "max_scale_down_rate"):
        with pytest.raises(ValueError, match=message):
            KpaPolicy(target=1, **{name: 1.0})
        assert getattr(KpaPolicy(target=1, **{name: 1.01}), name) == 1.01
    with pytest.raises(ValueError, match=r"^activation_scale must be >= 1 and scale_to_zero_grace_s >= 0$"):
        KpaPolicy(target=1, scale_to_zero_grace_s=-1)


def test_decide_reasons_and_unknown_ready_pods():
    kpa = KpaPolicy(target=10)
    proposal, _ = kpa.decide({"concurrency_stable": math.nan, "concurrency_panic": math.nan}, ctx(0, 2), kpa.initial_state())
    assert proposal.reasons == ("no concurrency data",)
    # Ready pods unknown: counted as 0 (so the restart rule does not panic), then as 1 by Scale.
    proposal, state = kpa.decide({"concurrency_stable": 5.0, "concurrency_panic": 5.0}, ctx(0, 2), kpa.initial_state())
    assert proposal.replicas == 1 and state.max_panic_pods == 0 and not state.panicking
    assert proposal.reasons == ("stable: concurrency 5.0 over 60 s / target 10 -> 1",)
    proposal, _ = kpa.decide(snap(10, 40, 2), ctx(0, 2), kpa.initial_state())
    assert proposal.reasons == ("panic: concurrency 40.0 over 6 s -> 4, stable -> 1, holding 4",)


def test_activation_scale_in_panic_and_after_unpanic():
    kpa = harness(10, activation_scale=2)
    a = Scaler(kpa)
    a.state = KpaState(True, -5.0, 0)  # in panic, nothing held yet
    assert a.scale(0, 0) == 0  # no traffic: no activation scale, even in panic
    a.state = KpaState(True, -5.0, 0)
    assert a.scale(0, 1) == 2  # ceil(1 / 10) = 1 panic pod, raised to the activation scale 2
    # Un-panic resets the panic maximum.
    b = Scaler(harness(10))
    b.ready = 10
    b.scale(100, 1000, now=0)
    assert b.state.max_panic_pods == 100
    b.scale(1, 1, now=61)
    assert not b.state.panicking and b.state.max_panic_pods == 0


def test_grace_counts_from_when_zero_was_first_wanted():
    kpa = KpaPolicy(target=10, scale_to_zero_grace_s=30)
    proposal, state = kpa.decide(snap(0, 0, 1), ctx(10, 1), kpa.initial_state())
    assert state.zero_since_s == 10 and proposal.reasons[-1] == "scale-to-zero grace: zero wanted for 0 s < 30 s"
    proposal, state = kpa.decide(snap(0, 0, 1), ctx(35, 1), state)
    assert proposal.replicas == 1 and proposal.reasons[-1] == "scale-to-zero grace: zero wanted for 25 s < 30 s"
    proposal, _ = kpa.decide(snap(0, 0, 1), ctx(40, 1), state)
    assert proposal.replicas == 0 and proposal.reasons == ("stable: concurrency 0.0 over 60 s / target 10 -> 0",)
    # Already at zero: no grace to wait for.
    proposal, _ = kpa.decide(snap(0, 0, 0), ctx(0, 0), kpa.initial_state())
    assert proposal.replicas == 0


def test_load_state_after_a_restart():
    kpa = KpaPolicy(target=10)
    assert kpa.load_state({"maxPanicPods": 0}, 5.0, 8) == KpaState()  # not in panic: New's rule at the first decision
    assert kpa.load_state({}, 5.0, 8) == KpaState() and kpa.load_state({"maxPanicPods": "x"}, 5.0, 8) == KpaState()
    assert kpa.load_state({"maxPanicPods": 1}, 5.0, 8) == KpaState(True, 5.0, 1)
    restored = kpa.load_state({"maxPanicPods": 12}, 5.0, 8)
    assert restored == KpaState(True, 5.0, 8) and restored.started is True
    assert kpa.dump_state(restored) == {"maxPanicPods": 8} and kpa.dump_state(KpaState(True, None, 3)) == {}


def test_gateway_requests_count_in_the_stable_window_too():
    """10 ready pods, 50 concurrent and 25 held: (50 + 25) / 10 -> 8 pods in stable mode (8 / 10 < 2)."""
    kpa = KpaPolicy(target=10)
    proposal, state = kpa.decide(snap(50, 50, 10, pending=25), ctx(0, 10), KpaState(True, None, 10))
    assert proposal.replicas == 8 and not state.panicking
