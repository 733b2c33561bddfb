"""Guardrail properties (hypothesis), the order of the pipeline, and each guard's reason."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.decision import Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails

behaviors = st.builds(
    lambda lo, span, up, down, window, cool_up, cool_down, rule: Behavior(lo, lo + span, up, down, window, cool_up, cool_down, rule),
    st.integers(0, 5), st.integers(0, 20), st.one_of(st.none(), st.integers(1, 5)), st.one_of(st.none(), st.integers(1, 5)),
    st.sampled_from([0.0, 60.0, 300.0]), st.sampled_from([0.0, 30.0]), st.sampled_from([0.0, 120.0]),
    st.sampled_from(["hold", "baseline", "scale_up_only"]),
)
proposals = st.one_of(st.just(Proposal(None)), st.integers(0, 40).map(Proposal))
decisions = st.lists(st.tuples(proposals, st.booleans(), st.one_of(st.just(Proposal(None)), st.integers(0, 40).map(Proposal)),
                               st.sampled_from([5.0, 15.0, 60.0])), min_size=1, max_size=30)


def expected_recommendation(behavior: Behavior, proposal: Proposal, baseline: Proposal, current: int, stale: bool) -> int | None:
    def clamp(value: int) -> int:
        return min(max(value, behavior.min_replicas), behavior.max_replicas)

    if not stale:
        return clamp(proposal.replicas) if proposal.valid else None
    if behavior.stale_rule == "scale_up_only" and proposal.valid:
        return clamp(max(current, proposal.replicas))
    if behavior.stale_rule == "baseline" and baseline.valid:
        return clamp(max(current, baseline.replicas))
    return None


@settings(max_examples=300, deadline=None)
@given(behavior=behaviors, steps=decisions, start=st.integers(0, 25))
def test_pipeline_properties(behavior, steps, start):
    state, now = GuardState(), 0.0
    current = min(max(start, behavior.min_replicas), behavior.max_replicas)
    recs: list[tuple[float, int]] = []
    for proposal, stale, baseline, dt in steps:
        now += dt
        before = copy.deepcopy(state)
        final, guard_steps, reason, new_state = apply_guardrails(proposal, current, now, behavior, state, stale=stale, baseline=baseline)
        # Never outside the bounds.
        assert behavior.min_replicas <= final <= behavior.max_replicas
        # Step limits hold.
        if behavior.max_step_up is not None:
            assert final - current <= behavior.max_step_up
        if behavior.max_step_down is not None:
            assert current - final <= behavior.max_step_down
        # Never scale down on stale data, whatever the rule.
        if stale:
            assert final >= current
        # No scale-down below the highest recommendation of the stabilisation window (kept here independently:
        # a recommendation is the bounded value that the policy, or the stale rule, asked for; a hold is none).
        rec = expected_recommendation(behavior, proposal, baseline, current, stale)
        if rec is not None:
            recs.append((now, rec))
        if final < current:
            window = [r for t, r in recs if t > now - behavior.scale_down_stabilization_s or t == now]
            assert final >= min(current, max(window))
            assert not stale and proposal.valid
        # No change within the cooldown of the last scale event.
        since = now - state.last_scale_s
        if final > current:
            assert since >= behavior.cooldown_up_s
        if final < current:
            assert since >= behavior.cooldown_down_s
        # Every departure from the raw proposal is explained, and the reason names the last guard.
        raw = proposal.replicas if proposal.valid and not stale else current
        if final != raw:
            assert guard_steps and reason.startswith(guard_steps[-1].guard)
        for step in guard_steps:
            assert step.reason
        # The old state is untouched (the call is pure).
        assert state == before
        if final != current:
            assert new_state.last_scale_s == now and new_state.last_scale_direction == (1 if final > current else -1)
        state, current = new_state, final


def test_result_unpacks_and_reads_by_name():
    result = apply_guardrails(Proposal(5), 3, 0.0, Behavior(1, 10), GuardState(), stale=False)
    final, steps, reason, state = result
    assert (final, steps, reason) == (5, (), "ScaleUp: 3 -> 5") and result.state is state
    assert state.last_scale_s == 0.0 and state.last_scale_direction == 1 and state.recommendations == ((0.0, 5),)


def test_each_guard_names_its_reason():
    b = Behavior(min_replicas=2, max_replicas=10, max_step_up=2, max_step_down=1, scale_down_stabilization_s=300, cooldown_up_s=60)
    below = apply_guardrails(Proposal(1), 3, 0, b, GuardState(), stale=False)
    assert below.final == 2 and below.steps[0].guard == "BelowMin" and (below.steps[0].before, below.steps[0].after) == (1, 2)
    above = apply_guardrails(Proposal(20), 9, 0, b, GuardState(), stale=False)
    assert above.final == 10 and [s.guard for s in above.steps] == ["AboveMax"]
    up = apply_guardrails(Proposal(8), 3, 0, b, GuardState(), stale=False)
    assert up.final == 5 and [s.guard for s in up.steps] == ["ScaleUpLimit"] and up.reason.startswith("ScaleUpLimit")
    down = apply_guardrails(Proposal(2), 6, 0, Behavior(1, 10, max_step_down=1, scale_down_stabilization_s=0), GuardState(), stale=False)
    assert down.final == 5 and [s.guard for s in down.steps] == ["ScaleDownLimit"]
    history = GuardState(recommendations=((10.0, 7),))
    stabilized = apply_guardrails(Proposal(4), 6, 100, Behavior(1, 10, scale_down_stabilization_s=300), history, stale=False)
    assert stabilized.final == 6 and stabilized.steps[-1].guard == "ScaleDownStabilized"
    cooling = apply_guardrails(Proposal(5), 3, 100, b, GuardState(last_scale_s=70.0), stale=False)
    assert cooling.final == 3 and cooling.steps[-1].guard == "Cooldown" and "30 s ago" in cooling.reason
    none = apply_guardrails(Proposal(None), 4, 0, b, GuardState(), stale=False)
    assert none.final == 4 and none.steps[0].guard == "NoValidProposal" and none.state.recommendations == ()


def test_stabilisation_holds_the_window_maximum_then_lets_go():
    b = Behavior(1, 10, scale_down_stabilization_s=60)
    state = GuardState()
    finals = []
    # t=0: 8 recommended at 8 replicas; then 3 is recommended every 15 s.
    for t, want, current in [(0, 8, 8), (15, 3, 8), (45, 3, 8), (60, 3, 8), (75, 3, 8)]:
        result = apply_guardrails(Proposal(want), current, t, b, state, stale=False)
        finals.append(result.final)
        state = result.state
    # The 8 of t=0 is in (t - 60, t] up to t=45; at t=60 it has left: the highest is 3.
    assert finals == [8, 8, 8, 3, 3]


def test_stabilisation_sees_recommendations_before_the_step_limit():
    # A step-limited descent 10 -> 9 -> 8 is not mistaken for recommendations 9 and 8: the recorded
    # recommendation is the raw 2, so once the window passes the early 10 nothing holds the descent back.
    b = Behavior(1, 10, max_step_down=1, scale_down_stabilization_s=30)
    result = apply_guardrails(Proposal(10), 10, 0, b, GuardState(), stale=False)
    current, state, finals = 10, result.state, []
    for t in (15, 30, 45, 60):
        result = apply_guardrails(Proposal(2), current, t, b, state, stale=False)
        current, state = result.final, result.state
        finals.append(current)
    assert finals == [10, 9, 8, 7]
    assert [r for _, r in state.recommendations] == [2, 2]


def test_order_bounds_before_step_limit_before_cooldown():
    # Proposal 50 at 3 replicas, max 10, +2 per interval: AboveMax (50 -> 10), then ScaleUpLimit (10 -> 5).
    b = Behavior(1, 10, max_step_up=2)
    result = apply_guardrails(Proposal(50), 3, 0, b, GuardState(), stale=False)
    assert [(s.guard, s.before, s.after) for s in result.steps] == [("AboveMax", 50, 10), ("ScaleUpLimit", 10, 5)]
    # A cooldown vetoes what the step limit allowed.
    cool = apply_guardrails(Proposal(50), 3, 10, Behavior(1, 10, max_step_up=2, cooldown_up_s=30), GuardState(last_scale_s=0.0), stale=False)
    assert [s.guard for s in cool.steps] == ["AboveMax", "ScaleUpLimit", "Cooldown"] and cool.final == 3


def test_cooldown_down_after_a_scale_up():
    b = Behavior(1, 10, scale_down_stabilization_s=0, cooldown_down_s=120)
    up = apply_guardrails(Proposal(6), 3, 0, b, GuardState(), stale=False)
    early = apply_guardrails(Proposal(2), 6, 60, b, up.state, stale=False)
    late = apply_guardrails(Proposal(2), 6, 120, b, up.state, stale=False)
    assert up.final == 6 and early.final == 6 and early.steps[-1].guard == "Cooldown" and late.final == 2


@pytest.mark.parametrize(("rule", "expected", "guard"), [
    ("hold", 5, "StaleMetricsHold"), ("scale_up_only", 5, "StaleMetricsScaleUpOnly"), ("baseline", 7, "StaleMetricsBaseline")])
def test_stale_rules(rule, expected, guard):
    b = Behavior(1, 10, scale_down_stabilization_s=0, stale_rule=rule)
    result = apply_guardrails(Proposal(2), 5, 0, b, GuardState(), stale=True, baseline=Proposal(7))
    assert result.final == expected and result.steps[0].guard == guard
    up = apply_guardrails(Proposal(8), 5, 0, b, GuardState(), stale=True, baseline=Proposal(3))
    assert up.final == {"hold": 5, "scale_up_only": 8, "baseline": 5}[rule]
    # Without a usable baseline proposal, the baseline rule holds.
    none = apply_guardrails(Proposal(8), 5, 0, b, GuardState(), stale=True, baseline=Proposal(None))
    assert none.final == {"hold": 5, "scale_up_only": 8, "baseline": 5}[rule]


def test_stale_hold_is_not_a_recommendation():
    # Holding for lack of data records nothing, so it does not extend the stabilisation window.
    b = Behavior(1, 10, stale_rule="hold")
    result = apply_guardrails(Proposal(9), 5, 0, b, GuardState(), stale=True)
    assert result.final == 5 and result.state.recommendations == () and result.reason.startswith("StaleMetricsHold")


def test_bounds_win_when_the_current_replicas_are_out_of_range():
    # An operator lowered max to 4 while 9 replicas run; even on stale data the bound applies.
    b = Behavior(1, 4, max_step_down=1, stale_rule="hold")
    result = apply_guardrails(Proposal(None), 9, 0, b, GuardState(), stale=True)
    assert result.final == 4 and result.steps[-1].guard == "Bounds"


@pytest.mark.parametrize(("since", "allowed"), [(59.0, False), (60.0, True)])
def test_cooldown_boundary_both_directions(since, allowed):
    """A change exactly one cooldown after the last scale event is allowed; one second earlier it is not."""
    b = Behavior(1, 10, scale_down_stabilization_s=0, cooldown_up_s=60, cooldown_down_s=60)
    state = GuardState(last_scale_s=0.0)
    up = apply_guardrails(Proposal(6), 3, since, b, state, stale=False)
    down = apply_guardrails(Proposal(2), 6, since, b, state, stale=False)
    assert (up.final == 6, down.final == 2) == (allowed, allowed)


def test_stabilization_window_boundary():
    """A recommendation exactly one window old has left the window (it is kept while t > now - window)."""
    b = Behavior(1, 10, scale_down_stabilization_s=60)
    state = GuardState(recommendations=((0.0, 8),), last_decision_s=0.0)
    assert apply_guardrails(Proposal(3), 8, 59.0, b, state, stale=False).final == 8
    assert apply_guardrails(Proposal(3), 8, 60.0, b, state, stale=False).final == 3


def test_invalid_behavior_is_rejected():
    with pytest.raises(ValueError, match="min_replicas"):
        Behavior(5, 2)
    with pytest.raises(ValueError, match="stale_rule"):
        Behavior(stale_rule="panic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_step_up"):
        Behavior(max_step_up=0)
    with pytest.raises(ValueError, match="cooldown_up_s"):
        Behavior(cooldown_up_s=-1)
    assert math.isinf(GuardState().last_scale_s)


@pytest.mark.parametrize(("rule", "baseline", "step"), [
    ("hold", None, ("StaleMetricsHold", 9, 5, "metrics stale: hold the current replicas")),
    ("scale_up_only", None, ("StaleMetricsScaleUpOnly", 9, 9, "metrics stale: scale up only")),
    ("baseline", Proposal(7), ("StaleMetricsBaseline", 9, 7, "metrics stale: the baseline's proposal, never below current")),
    ("baseline", Proposal(None), ("StaleMetricsBaseline", 9, 5, "metrics stale: no baseline proposal, hold")),
])
def test_stale_steps_record_the_raw_proposal_and_the_value(rule, baseline, step):
    b = Behavior(1, 10, scale_down_stabilization_s=0, stale_rule=rule)
    result = apply_guardrails(Proposal(9), 5, 0.0, b, GuardState(), stale=True, baseline=baseline)
    assert (result.steps[0].guard, result.steps[0].before, result.steps[0].after, result.steps[0].reason) == step
    assert result.reason == f"{step[0]}: {step[3]}" or len(result.steps) > 1


def test_exact_reasons_of_each_guard():
    b = Behavior(min_replicas=2, max_replicas=10, max_step_up=2, max_step_down=1, scale_down_stabilization_s=300, cooldown_up_s=60,
                 cooldown_down_s=30)
    steps = lambda r: [(s.guard, s.before, s.after, s.reason) for s in r.steps]  # noqa: E731
    assert steps(apply_guardrails(Proposal(1), 3, 0, b, GuardState(), stale=False))[0] == ("BelowMin", 1, 2, "minReplicas is 2")
    assert steps(apply_guardrails(Proposal(20), 9, 0, b, GuardState(), stale=False)) == [("AboveMax", 20, 10, "maxReplicas is 10")]
    assert steps(apply_guardrails(Proposal(8), 3, 0, b, GuardState(), stale=False)) == [("ScaleUpLimit", 8, 5, "at most +2 per interval")]
    down = apply_guardrails(Proposal(2), 6, 0, Behavior(1, 10, max_step_down=1, scale_down_stabilization_s=0), GuardState(), stale=False)
    assert steps(down) == [("ScaleDownLimit", 2, 5, "at most -1 per interval")]
    held = apply_guardrails(Proposal(4), 6, 100, Behavior(1, 10, scale_down_stabilization_s=300), GuardState(((10.0, 7),)), stale=False)
    assert steps(held) == [("ScaleDownStabilized", 4, 6, "highest recommendation in the last 300 s is 7")]
    assert held.reason == "ScaleDownStabilized: highest recommendation in the last 300 s is 7"
    cool_up = apply_guardrails(Proposal(5), 3, 100, b, GuardState(last_scale_s=70.0), stale=False)
    assert steps(cool_up) == [("Cooldown", 5, 3, "last scale event 30 s ago < scale-up cooldown 60 s")]
    cool_down = apply_guardrails(Proposal(2), 3, 100, Behavior(1, 10, scale_down_stabilization_s=0, cooldown_down_s=30),
                                 GuardState(last_scale_s=80.0), stale=False)
    assert steps(cool_down) == [("Cooldown", 2, 3, "last scale event 20 s ago < scale-down cooldown 30 s")]
    none = apply_guardrails(Proposal(None), 4, 0, b, GuardState(), stale=False)
    assert steps(none) == [("NoValidProposal", 4, 4, "the policy has no valid proposal: hold")]
    assert none.reason == "NoValidProposal: the policy has no valid proposal: hold"
    out_of_range = apply_guardrails(Proposal(None), 12, 0, b, GuardState(), stale=True)
    assert steps(out_of_range)[-1] == ("Bounds", 11, 10, "maxReplicas is 10")  # after the -1 step limit
    assert apply_guardrails(Proposal(4), 4, 0, b, GuardState(), stale=False).reason == "NoChange: 4"
    assert apply_guardrails(Proposal(3), 4, 0, Behavior(1, 10, scale_down_stabilization_s=0), GuardState(), stale=False).reason == "ScaleDown: 4 -> 3"


def test_scale_to_zero_and_activation_steps_exactly():
    b = Behavior(0, 4, scale_down_stabilization_s=0, scale_to_zero_idle_s=120, activation_threshold=1)
    idle = apply_guardrails(Proposal(0), 1, 100.0, b, GuardState(last_traffic_s=40.0), stale=False, traffic=False)
    assert [(s.guard, s.before, s.after, s.reason) for s in idle.steps] == [
        ("ScaleToZeroIdle", 0, 1, "traffic 60 s ago < scale-to-zero idle period 120 s")]
    assert idle.state.last_traffic_s == 40.0
    gone = apply_guardrails(Proposal(0), 1, 160.0, b, GuardState(last_traffic_s=40.0), stale=False, traffic=False)
    assert gone.final == 0 and gone.steps == ()
    woken = apply_guardrails(Proposal(0), 0, 0.0, b, GuardState(), stale=True, pending=2.0)
    assert [(s.guard, s.before, s.after, s.reason) for s in woken.steps][-1] == (
        "Activation", 0, 1, "2 requests held at the gateway > activation threshold 1")
    assert woken.final == 1 and woken.state.last_scale_direction == 1
    at_threshold = apply_guardrails(Proposal(0), 0, 0.0, b, GuardState(), stale=False, pending=1.0)
    assert at_threshold.final == 0  # more than the threshold is needed
    # Defaults: nothing pending, traffic assumed (the idle clock restarts).
    plain = apply_guardrails(Proposal(0), 0, 5.0, b, GuardState(), stale=False)
    assert plain.final == 0 and plain.state.last_traffic_s == 5.0 and plain.state.last_decision_s == 5.0
    closed = apply_guardrails(Proposal(0), 0, 0.0, Behavior(0, 0), GuardState(), stale=False, pending=5.0)
    assert closed.final == 0  # maxReplicas 0: nothing to activate


def test_behavior_error_messages():
    with pytest.raises(ValueError, match=r"^stale_rule must be one of hold, baseline, scale_up_only, got 'panic'$"):
        Behavior(stale_rule="panic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^need 0 <= min_replicas <= max_replicas, got min_replicas=5, max_replicas=2$"):
        Behavior(5, 2)
    with pytest.raises(ValueError, match=r"^max_step_down must be >= 1 or None, got 0$"):
        Behavior(max_step_down=0)
    for name in ("scale_down_stabilization_s", "cooldown_down_s", "activation_threshold", "scale_to_zero_idle_s"):
        with pytest.raises(ValueError, match=rf"^{name} must be >= 0, got -1$"):
            Behavior(**{name: -1})
    assert Behavior(0, 0).max_replicas == 0 and Behavior(max_step_up=1, max_step_down=1).max_step_up == 1


def test_the_new_state_records_the_decision():
    b = Behavior(1, 10, scale_down_stabilization_s=60)
    previous = GuardState(((0.0, 5),), last_scale_s=-100.0, last_scale_direction=-1, last_traffic_s=-50.0, last_decision_s=0.0)
    same = apply_guardrails(Proposal(5), 5, 10.0, b, previous, stale=False, traffic=False)
    assert same.state == GuardState(((0.0, 5), (10.0, 5)), -100.0, -1, -50.0, 10.0)
    up = apply_guardrails(Proposal(7), 5, 20.0, b, previous, stale=False)
    assert up.state == GuardState(((0.0, 5), (20.0, 7)), 20.0, 1, 20.0, 20.0)


def test_nothing_pending_by_default():
    assert apply_guardrails(Proposal(0), 0, 0.0, Behavior(0, 4), GuardState(), stale=False).final == 0


def test_scale_up_only_on_stale_data_records_the_recommendation():
    """A valid proposal taken under the scale-up-only rule is a recommendation for the window; a hold is not."""
    b = Behavior(1, 10, scale_down_stabilization_s=60, stale_rule="scale_up_only")
    taken = apply_guardrails(Proposal(8), 5, 0.0, b, GuardState(), stale=True)
    assert taken.final == 8 and taken.state.recommendations == ((0.0, 8),)
    held = apply_guardrails(Proposal(None), 5, 0.0, b, GuardState(), stale=True)
    assert held.final == 5 and held.state.recommendations == ()
