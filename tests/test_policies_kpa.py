"""The KPA policy: Knative's stable and panic windows (pkg/autoscaler/scaling/autoscaler.go).

Time advances explicitly from zero in 15 s control intervals; the arithmetic is in the comments.
"""

from __future__ import annotations

import math

import pytest

from controller.policies.base import PolicyContext
from controller.policies.kpa import KpaPolicy, KpaState


def ctx(now: float, current: int) -> PolicyContext:
    return PolicyContext(now_s=now, current_replicas=current, min_replicas=1, max_replicas=1000)


def conc(concurrency: float, ready: int) -> dict[str, float]:
    return {"requests_running": float(concurrency), "requests_waiting": 0.0, "replicas_ready": float(ready)}


def drive(kpa: KpaPolicy, steps: list[tuple[float, float, int]], state: KpaState | None = None):
    """(time, concurrency, ready) -> proposals and the final state."""
    state = kpa.initial_state() if state is None else state
    out = []
    for now, c, ready in steps:
        proposal, state = kpa.decide(conc(c, ready), ctx(now, ready), state)
        out.append(proposal.replicas)
    return out, state


def test_stable_mode_divides_the_window_average_by_the_target():
    kpa = KpaPolicy(target=10)
    # 20 concurrent requests at target 10 per pod -> ceil(20 / 10) = 2, no panic (2 / 2 < 2.0).
    out, state = drive(kpa, [(t, 20, 2) for t in (0, 15, 30, 45)])
    assert out == [2, 2, 2, 2] and not state.panicking
    # Samples older than the stable window are pruned: at t=75 only (15, 30, 45, 75] remain.
    _, state = drive(kpa, [(75, 20, 2)], state)
    assert [t for t, _ in state.samples] == [30, 45, 75]


def test_panic_on_a_burst_never_scales_down_and_ends_a_stable_window_later():
    kpa = KpaPolicy(target=10)
    _, state = drive(kpa, [(t, 20, 2) for t in (0, 15, 30, 45)])
    # t=60: concurrency jumps to 100. Stable window (0, 60]: (20 + 20 + 20 + 100) / 4 = 40 -> 4 pods.
    # Panic window (54, 60]: 100 -> 10 pods; 10 / 2 ready = 5 >= 2.0 -> PANIC; desired max(4, 10) = 10.
    out, state = drive(kpa, [(60, 100, 2)], state)
    assert out == [10] and state.panicking and state.panic_time_s == 60
    # t=75: the burst is served by 10 ready pods, concurrency 10. Panic window: 10 -> 1 pod,
    # 1 / 10 < 2: not over the threshold, but panic lasts until 60 + 60 < now. Stable (15, 75]:
    # (20 + 20 + 100 + 10) / 4 = 37.5 -> 4, floored at 10 / 2 = 5 by the max scale-down rate.
    # In panic the count never falls: it holds the panic maximum 10 through t=120 (60 + 60 is not < 120).
    out, state = drive(kpa, [(t, 10, 10) for t in (75, 90, 105, 120)], state)
    assert out == [10, 10, 10, 10] and state.panicking
    # t=135: 60 + 60 < 135 -> un-panic. Stable (75, 135]: all 10 -> 1 pod, floored at floor(10 / 2) = 5.
    out, state = drive(kpa, [(135, 10, 10)], state)
    assert out == [5] and not state.panicking and state.max_panic_pods == 0


def test_panic_is_extended_while_the_threshold_holds_and_takes_the_larger_window():
    kpa = KpaPolicy(target=10)
    # t=0: 60 requests on 2 pods -> panic (6 / 2 = 3 >= 2), desired 6.
    # t=15: 200 requests, still 2 ready pods: panic 20 pods, stable (60 + 200) / 2 = 130 -> 13: max 20.
    # t=90: 80 requests on 20 pods, panic 8 / 20 < 2 and 15 + 60 < 90 -> stable (30, 90] = 80 -> 8, floored at 10.
    out, state = drive(kpa, [(0, 60, 2), (15, 200, 2), (90, 80, 20)])
    assert out == [6, 20, 10]
    # In panic the larger of the two windows wins. t=0: 100 requests on 10 pods -> 10, no panic (10 / 10 < 2).
    # t=15: 30 requests and only 1 ready pod: panic window 30 -> 3 pods, 3 / 1 >= 2 -> panic;
    # stable (100 + 30) / 2 = 65 -> 7; desired max(7, 3) = 7 (the panic window alone would say 3).
    out, state = drive(kpa, [(0, 100, 10), (15, 30, 1)])
    assert out == [10, 7] and state.panicking and state.max_panic_pods == 7


def test_max_scale_up_rate_bounds_the_jump():
    kpa = KpaPolicy(target=1, max_scale_up_rate=2.0)
    # 100 requests on 3 ready pods: 100 pods wanted, at most ceil(2.0 * 3) = 6.
    out, _ = drive(kpa, [(0, 100, 3)])
    assert out == [6]


def test_no_data_is_an_invalid_result_that_keeps_the_samples():
    kpa = KpaPolicy(target=10)
    _, state = drive(kpa, [(0, 20, 2)])
    proposal, after = kpa.decide({"requests_running": math.nan, "replicas_ready": 2.0}, ctx(15, 2), state)
    assert not proposal.valid and after.samples == state.samples
    # Zero ready pods count as one (Knative: "use 1 if there are zero current pods").
    proposal, _ = kpa.decide(conc(5, 0), ctx(0, 0), kpa.initial_state())
    assert proposal.replicas == 1  # ceil(5 / 10) = 1; 1 / 1 < 2: no panic


def test_invalid_parameters():
    with pytest.raises(ValueError, match="target"):
        KpaPolicy(target=0)
    with pytest.raises(ValueError, match="panic_window_s"):
        KpaPolicy(target=1, panic_window_s=120)
    with pytest.raises(ValueError, match="exceed 1"):
        KpaPolicy(target=1, panic_threshold=1.0)
