"""Guardrail properties (hypothesis) and each guard's reason."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.decision import Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails

behaviors = st.builds(
    lambda lo, span, up, down, window, cool_up, cool_down, rule: Behavior(lo, lo + span, up, down, window, cool_up, cool_down, rule),
    st.integers(0, 5), st.integers(0, 20), st.one_of(st.none(), st.integers(1, 5)), st.one_of(st.none(), st.integers(1, 5)),
    st.sampled_from([0.0, 60.0, 300.0]), st.sampled_from([0.0, 30.0]), st.sampled_from([0.0, 120.0]), st.sampled_from(["hold", "baseline", "scale_up_only"]),
)
proposals = st.one_of(st.just(Proposal(None)), st.integers(0, 40).map(Proposal))


@settings(max_examples=300, deadline=None)
@given(behavior=behaviors, steps=st.lists(st.tuples(proposals, st.booleans(), st.integers(0, 40)), min_size=1, max_size=30))
def test_pipeline_properties(behavior, steps):
    state, current, now = GuardState(), behavior.min_replicas, 0.0
    for proposal, stale, baseline in steps:
        now += 15.0
        result = apply_guardrails(proposal, current, now, behavior, state, stale=stale, baseline=Proposal(baseline))
        final = result.final
        # Never outside the bounds.
        assert behavior.min_replicas <= final <= behavior.max_replicas
        # Step limits hold (the current value is always inside the bounds here).
        if behavior.max_step_up is not None:
            assert final - current <= behavior.max_step_up
        if behavior.max_step_down is not None:
            assert current - final <= behavior.max_step_down
        # Never scale down on stale data, whatever the rule.
        if stale:
            assert final >= current
        # No scale-down below the highest recommendation of the stabilisation window.
        if final < current:
            recent = [r for t, r in result.state.recommendations if t >= now - behavior.scale_down_stabilization_s]
            assert final >= min(current, max(recent))
        # Every change from the raw proposal is explained.
        raw = proposal.replicas if proposal.valid else current
        if final != raw:
            assert result.steps
        state, current = result.state, final


def test_each_guard_names_its_reason():
    b = Behavior(min_replicas=2, max_replicas=10, max_step_up=2, max_step_down=1, scale_down_stabilization_s=300, cooldown_up_s=60)
    assert apply_guardrails(Proposal(1), 3, 0, b, GuardState(), stale=False).steps[0].guard == "BelowMin"
    assert apply_guardrails(Proposal(20), 9, 0, b, GuardState(), stale=False).steps[0].guard == "AboveMax"
    assert apply_guardrails(Proposal(8), 3, 0, b, GuardState(), stale=False).steps[-1].guard == "ScaleUpLimit"
    history = GuardState(recommendations=((10.0, 7),))
    stabilized = apply_guardrails(Proposal(4), 6, 100, Behavior(1, 10, scale_down_stabilization_s=300), history, stale=False)
    assert stabilized.final == 6 and stabilized.steps[-1].guard == "ScaleDownStabilized"
    cooling = apply_guardrails(Proposal(5), 3, 100, b, GuardState(last_scale_s=70.0), stale=False)
    assert cooling.final == 3 and cooling.steps[-1].guard == "Cooldown"
    none = apply_guardrails(Proposal(None), 4, 0, b, GuardState(), stale=False)
    assert none.final == 4 and none.steps[0].guard == "NoValidProposal"


@pytest.mark.parametrize(("rule", "expected", "guard"), [("hold", 5, "StaleMetricsHold"), ("scale_up_only", 5, "StaleMetricsScaleUpOnly"), ("baseline", 7, "StaleMetricsBaseline")])
def test_stale_rules(rule, expected, guard):
    b = Behavior(1, 10, scale_down_stabilization_s=0, stale_rule=rule)
    result = apply_guardrails(Proposal(2), 5, 0, b, GuardState(), stale=True, baseline=Proposal(7))
    assert result.final == expected and result.steps[0].guard == guard
    up = apply_guardrails(Proposal(8), 5, 0, b, GuardState(), stale=True, baseline=Proposal(3))
    assert up.final == {"hold": 5, "scale_up_only": 8, "baseline": 5}[rule]


def test_invalid_behavior_is_rejected():
    with pytest.raises(ValueError, match="min_replicas"):
        Behavior(5, 2)
    with pytest.raises(ValueError, match="stale_rule"):
        Behavior(stale_rule="panic")
    assert math.isinf(GuardState().last_scale_s)
