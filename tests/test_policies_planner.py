"""The predictive planner: capacity and forecast on worked numbers, consolidation, and its safety property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.autoscaling import Autoscaler, decide
from controller.capacity import CapacityProfile
from controller.guardrails import Behavior
from controller.policies.base import PolicyContext
from controller.policies.planner import PlannerPolicy
from controller.policies.registry import build_policy
from controller.slo import SLO

#: One replica serves 4 req/s of 1,000-token prompts with 200-token outputs while the SLO holds.
CAPACITY = CapacityProfile((1000.0, 4000.0), (200.0, 800.0), ((4.0, 3.0), (2.0, 1.5)))
EXACT_MIX = {"mix_smoothing": 1.0}  # take each window's token mix as it is: the numbers below are exact


def ctx(current: int, now: float = 0.0, max_replicas: int = 32, cold_start_s: float = 90.0) -> PolicyContext:
    return PolicyContext(now, current, 1, max_replicas, SLO(), 15.0, CAPACITY, cold_start_s)


def snap(rate: float, waiting: float = 0.0, running: float | None = None, ttft: float = 0.2, prompt: float = 1000, output: float = 200):
    return {"request_rate": rate, "requests_waiting": waiting, "requests_running": rate if running is None else running,
            "prompt_token_rate": rate * prompt, "generation_token_rate": rate * output, "ttft_p95": ttft}


def test_replicas_from_demand_over_capacity_at_the_target_utilisation():
    """10 req/s of the 1,000/200 mix; one replica serves 4 at the SLO; planned at 80%: 10 / 3.2 = 3.125 -> 4."""
    planner = PlannerPolicy(target_utilization=0.8, **EXACT_MIX)
    proposal, state = planner.decide(snap(10.0), ctx(2), planner.initial_state())
    assert proposal.replicas == 4
    assert (state.prompt_tokens, state.output_tokens) == (1000.0, 200.0)
    # at 50%: 10 / 2 = 5
    assert PlannerPolicy(target_utilization=0.5, **EXACT_MIX).decide(snap(10.0), ctx(2), planner.initial_state())[0].replicas == 5


def test_the_token_mix_moves_the_capacity():
    """4,000-token prompts: one replica serves 2 req/s, so 10 req/s at 80% need ceil(10 / 1.6) = 7."""
    planner = PlannerPolicy(**EXACT_MIX)
    assert planner.decide(snap(10.0, prompt=4000), ctx(2), planner.initial_state())[0].replicas == 7


def test_the_queue_counts_as_demand_to_drain():
    """3 req/s served plus 60 waiting to drain in 60 s = 4 req/s: ceil(4 / 3.2) = 2 (3 alone needs 1)."""
    planner = PlannerPolicy(**EXACT_MIX)
    assert planner.decide(snap(3.0), ctx(1), planner.initial_state())[0].replicas == 1
    assert planner.decide(snap(3.0, waiting=60), ctx(1), planner.initial_state())[0].replicas == 2


def test_the_growth_of_requests_in_flight_shows_a_burst_before_the_windowed_rate_does():
    """Arrivals = completions + growth in the system. At capacity one replica holds 8 requests in flight.
    t = 0: 2 in flight, 2 req/s served. t = 15: 122 in flight while the one-minute rate still says 2 req/s:
    2 + 120 / 15 s of growth + (122 - 1 x 8 held) / 60 s of backlog = 11.9 req/s. t = 30: 242 in flight:
    2 + 8 + (242 - 8) / 60 = 13.9. The trend follows demand confirmed over two decisions: min(13.9, 11.9) = 11.9
    (alpha = 1), and scale-up serves at least the demand now: the unconfirmed burst of 11.9 req/s already gets
    ceil(11.9 / 3.2) = 4 replicas while the trend's level stays at 2; confirmed, 13.9 req/s need 5."""
    with_flight = CapacityProfile(CAPACITY.prompt_tokens, CAPACITY.output_tokens, CAPACITY.max_rps, "", ((8.0, 8.0), (8.0, 8.0)))
    planner = PlannerPolicy(alpha=1.0, horizon_s=0.0, burst_z=0.0, **EXACT_MIX)

    def at(t: float) -> PolicyContext:
        return PolicyContext(t, 1, 1, 32, SLO(), 15.0, with_flight, 90.0)

    def reading(in_flight: float) -> dict:
        return dict(snap(2.0, running=in_flight), replicas_ready=1.0)

    first, state = planner.decide(reading(2.0), at(0.0), planner.initial_state())
    assert first.replicas == 1
    unconfirmed, state = planner.decide(reading(122.0), at(15.0), state)
    assert state.last_demand == pytest.approx(11.9) and state.demand.level == pytest.approx(2.0) and unconfirmed.replicas == 4
    confirmed, state = planner.decide(reading(242.0), at(30.0), state)
    assert state.demand.level == pytest.approx(11.9) and confirmed.replicas == 5


def test_scale_up_one_cold_start_ahead_of_a_ramp():
    """A ramp of 4 req/s per 15 s; Holt with alpha = beta = 1 on demand confirmed over two decisions
    (4, min(8, 4) = 4, min(12, 8) = 8): level 8, trend 4/15 per s at t = 30. The horizon is the cold start plus
    one interval (90 + 15 s): undamped, 8 + 105 x 4/15 = 36 req/s, 36 / 3.2 -> 12 replicas; with the default
    60 s damping the trend reaches 60 (1 - exp(-105/60)) = 49.6 s ahead: 8 + 13.2 = 21.2 req/s -> 7 replicas.
    The demand now alone needs ceil(12 / 3.2) = 4: without a forecast, that is the answer."""
    def run(**kwargs) -> tuple:
        planner = PlannerPolicy(alpha=1.0, beta=1.0, burst_z=0.0, **EXACT_MIX, **kwargs)
        state, current = planner.initial_state(), 1
        for t, rate in ((0.0, 4.0), (15.0, 8.0), (30.0, 12.0)):
            proposal, state = planner.decide(snap(rate, running=10.0), ctx(current, now=t), state)
            current = proposal.replicas
        return proposal.replicas, state

    undamped, state = run(trend_damping_s=math.inf)
    assert state.demand.level == pytest.approx(8.0) and state.demand.trend == pytest.approx(4 / 15)
    assert undamped == 12
    assert run()[0] == 7
    assert run(horizon_s=0.0)[0] == 4  # no forecast: the trend's confirmed 8 req/s need 3, the demand now 12 needs 4


def test_scale_down_only_after_the_load_has_fit_on_fewer_replicas_for_the_delay():
    """6 replicas, a steady 4 req/s: at 80% x 0.9 = 72% of 4 req/s, 2 replicas hold it (4 / 2.88 = 1.39).
    The planner holds until that has been true for 60 s, then consolidates to 2."""
    planner = PlannerPolicy(scale_down_delay_s=60.0, **EXACT_MIX)
    state = planner.initial_state()
    decisions = []
    for t in range(0, 75, 15):
        proposal, state = planner.decide(snap(4.0), ctx(6, now=float(t)), state)
        decisions.append(proposal.replicas)
    assert decisions == [6, 6, 6, 6, 2]
    assert "consolidate: 2 hold 4 req/s" in proposal.reasons[-1]


def test_the_default_delay_is_two_horizons():
    """Cold start 90 s + one 15 s interval = a 105 s horizon: a smaller fleet must hold the demand for 210 s."""
    planner = PlannerPolicy(**EXACT_MIX)
    state, first_down = planner.initial_state(), None
    for t in range(0, 400, 15):
        proposal, state = planner.decide(snap(4.0), ctx(6, now=float(t)), state)
        if proposal.replicas < 6 and first_down is None:
            first_down = t
    assert planner.delay(ctx(6)) == 210.0 and first_down == 210


def test_a_burst_resets_the_consolidation_clock():
    planner = PlannerPolicy(horizon_s=0.0, scale_down_delay_s=60.0, **EXACT_MIX)  # no trend: 30 req/s need exactly ceil(30 / 3.2) = 10
    state = planner.initial_state()
    for t, rate in ((0, 4.0), (15, 4.0), (30, 30.0), (45, 4.0), (60, 4.0), (75, 4.0)):
        proposal, state = planner.decide(snap(rate), ctx(10, now=float(t)), state)
        assert proposal.replicas == 10  # the burst at 30 s needs 10; the 60 s of fit start again after it
    assert state.fits_since_s is not None and state.fits_since_s >= 45


def test_the_recent_peak_holds_the_fleet_through_a_silence_between_bursts():
    """16 req/s until 60 s (confirmed at 45 s), then near silence (0.1 req/s), on 5 replicas. A scale-down
    must fit the peak decayed with a 600 s time constant, at 80% x 0.9 = 2.88 req/s per replica: 4 replicas
    hold 11.52 req/s, which 16 x exp(-(t - 45) / 600) reaches after 197 s (t = 242, the decision at 255),
    then the 60 s delay: 4 at 315. 3 hold 8.64 (t = 415: 3 at 480), 2 hold 5.76 (t = 658: 2 at 720).
    Without the peak the planner sheds to 1 at 120 s, a minute after the burst."""
    changes = {}
    for hold in (600.0, None):
        planner = PlannerPolicy(horizon_s=0.0, scale_down_delay_s=60.0, burst_z=0.0, burst_window_s=15.0, peak_hold_s=hold,
                                **EXACT_MIX)
        state, fleet, changes[hold] = planner.initial_state(), 5, []
        for t in range(0, 900, 15):
            proposal, state = planner.decide(snap(16.0 if t < 60 else 0.1), ctx(fleet, now=float(t)), state)
            if proposal.replicas != fleet:
                changes[hold].append((t, proposal.replicas))
            fleet = proposal.replicas
    assert changes[600.0] == [(315, 4), (480, 3), (720, 2)]
    assert changes[None] == [(120, 1)]
    assert PlannerPolicy().peak_hold_s == 600.0 and build_policy({"type": "planner", "peakHoldS": 300}).peak_hold_s == 300.0


def test_without_a_request_rate_it_holds_or_adds_one_for_a_queue():
    planner = PlannerPolicy()
    empty = {"requests_waiting": 0.0, "requests_running": 0.0, "request_rate": math.nan}
    assert planner.decide(empty, ctx(2), planner.initial_state())[0].replicas is None
    assert planner.decide(dict(empty, requests_waiting=5.0), ctx(2), planner.initial_state())[0].replicas == 3


def test_without_a_capacity_profile_there_is_no_answer():
    planner = PlannerPolicy()
    proposal, _ = planner.decide(snap(10.0), PolicyContext(0.0, 2, 1, 8), planner.initial_state())
    assert proposal.replicas is None and "capacity" in proposal.reasons[0]


def test_through_decide_with_the_registry_spec_and_its_own_window():
    """Built from a spec in camelCase, run through the shared decide: no guardrail window is stacked on it."""
    policy = build_policy({"type": "planner", "targetUtilization": 0.8, "mixSmoothing": 1.0})
    autoscaler = Autoscaler(policy, Behavior(1, 16), capacity=CAPACITY, cold_start_s=90.0)
    assert autoscaler.behavior.scale_down_stabilization_s == 0.0
    record, _ = decide(autoscaler, dict(snap(10.0), replicas_ready=2.0), 0.0, 2, autoscaler.initial_state())
    assert (record.policy, record.proposal, record.final) == ("planner", 4, 4)


@pytest.mark.parametrize("kwargs", [{"target_utilization": 0}, {"target_utilization": 5}, {"scale_down_margin": 1.5},
                                    {"drain_s": 0}, {"scale_down_delay_s": -1}, {"mix_smoothing": 0}, {"alpha": 0},
                                    {"peak_hold_s": 0}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        PlannerPolicy(**kwargs)


# ---------------------------------------------------------------- safety property
snapshots = st.fixed_dictionaries({
    "request_rate": st.one_of(st.floats(0, 500), st.just(math.nan)),
    "request_rate_long": st.floats(0, 500),
    "requests_running": st.floats(0, 2000),
    "requests_waiting": st.floats(0.5, 2000),  # some requests wait
    "prompt_token_rate": st.one_of(st.floats(0, 1e6), st.just(math.nan)),
    "generation_token_rate": st.floats(0, 1e5),
    "ttft_p95": st.floats(0.51, 100),  # over the 500 ms SLO
    "tpot_p95": st.floats(0, 1),
    "kv_cache_usage": st.floats(0, 1),
    "replicas_ready": st.floats(0, 32),
    "replicas_starting": st.floats(0, 32),
})


@settings(max_examples=300, deadline=None)
@given(snapshot=snapshots, current=st.integers(1, 32), now=st.floats(0, 1e5))
def test_the_planner_never_scales_down_while_requests_wait_and_ttft_is_over_the_slo(snapshot, current, now):
    planner = PlannerPolicy(scale_down_delay_s=0.0)
    proposal, _ = planner.decide(snapshot, ctx(current, now=now), planner.initial_state())
    assert proposal.replicas is None or proposal.replicas >= current


def _latency(reading: dict, ttft: float, tpot: float, queue: float, starting: float = 0.0, ready: float = 2.0) -> dict:
    return {**reading, "ttft_p95": ttft, "tpot_p95": tpot, "queue_time_p95": queue, "replicas_starting": starting,
            "replicas_ready": ready}


def test_latency_feedback_lowers_the_planned_capacity_while_a_settled_fleet_misses_the_slo():
    """10 req/s needs 4 replicas by the profile (10 / 3.2). With TTFT over the SLO and requests queueing for
    most of it on a settled fleet, each decision multiplies the capacity by 0.85: after one, 10 / (3.2 x 0.85)
    = 3.7 -> still 4; after two, 10 / (3.2 x 0.7225) = 4.3 -> 5; after five, 0.85 ** 5 = 0.44 -> ceil(10 / 1.42) = 8."""
    planner = PlannerPolicy(**EXACT_MIX)
    state, replicas = planner.initial_state(), []
    for k in range(5):
        proposal, state = planner.decide(_latency(snap(10.0, running=20.0), ttft=2.0, tpot=0.03, queue=1.5), ctx(4, 15.0 * k), state)
        replicas.append(proposal.replicas)
    assert state.correction == pytest.approx(0.85 ** 5)
    assert replicas[:2] == [4, 5] and replicas[-1] == 8 and replicas == sorted(replicas)
    assert "corrected x0.44" in proposal.reasons[0]


def test_latency_feedback_ignores_misses_that_replicas_cannot_fix_and_waits_for_starting_replicas():
    planner = PlannerPolicy(**EXACT_MIX)
    long_prompt = _latency(snap(10.0), ttft=2.0, tpot=0.03, queue=0.01)  # TTFT over the SLO, but no queue: one long prompt
    _, state = planner.decide(long_prompt, ctx(4), planner.initial_state())
    assert state.correction == 1.0
    starting = _latency(snap(10.0, running=20.0), ttft=2.0, tpot=0.03, queue=1.5, starting=2.0)  # the fix is on its way
    _, state = planner.decide(starting, ctx(4), state)
    assert state.correction == 1.0
    lone_decode = _latency(snap(10.0, running=2.0), ttft=0.2, tpot=0.08, queue=0.0)  # slow tokens, one per replica
    _, state = planner.decide(lone_decode, ctx(4), state)
    assert state.correction == 1.0
    batched = _latency(snap(10.0, running=20.0), ttft=0.2, tpot=0.08, queue=0.0)  # slow tokens in full batches
    _, state = planner.decide(batched, ctx(4), state)
    assert state.correction == pytest.approx(0.85)


def test_latency_feedback_floors_and_recovers_towards_the_profile_while_the_slo_holds():
    """Floored at min_correction; then 30 minutes within the SLO take 1 - 0.6 x e^-1 of the way back."""
    planner = PlannerPolicy(min_correction=0.4, feedback_recovery_s=1800.0, **EXACT_MIX)
    state = planner.initial_state()
    for k in range(20):
        _, state = planner.decide(_latency(snap(10.0, running=20.0), ttft=2.0, tpot=0.03, queue=1.5), ctx(4, 15.0 * k), state)
    assert state.correction == 0.4
    t0 = 15.0 * 19
    for k in range(1, 121):  # 120 decisions of 15 s
        _, state = planner.decide(_latency(snap(10.0, running=20.0), ttft=0.2, tpot=0.03, queue=0.0), ctx(8, t0 + 15.0 * k), state)
    assert state.correction == pytest.approx(1 - 0.6 * math.exp(-1.0))
    idle = {"requests_running": 0.0, "requests_waiting": 0.0, "request_rate": 0.0}  # no latency in the window: unchanged
    _, after = planner.decide(idle, ctx(8, t0 + 15.0 * 121), state)
    assert after.correction == state.correction
