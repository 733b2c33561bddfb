"""The threshold baseline on tokens per minute per ready replica, and the fixed policy."""

from __future__ import annotations

import math

import pytest

from controller.policies.base import PolicyContext
from controller.policies.fixed import FixedPolicy
from controller.policies.threshold import ThresholdPolicy, tokens_per_minute_per_replica


def ctx(current: int, lo: int = 1, hi: int = 10) -> PolicyContext:
    return PolicyContext(now_s=0.0, current_replicas=current, min_replicas=lo, max_replicas=hi)


def tokens(prompt: float, generated: float, ready: int) -> dict[str, float]:
    return {"prompt_token_rate": prompt, "generation_token_rate": generated, "replicas_ready": float(ready)}


def test_tokens_per_minute_per_replica():
    # (600 + 400) tokens/s x 60 s / 2 replicas = 30,000 tokens/min per replica.
    assert tokens_per_minute_per_replica(tokens(600, 400, 2)) == 30_000
    assert math.isnan(tokens_per_minute_per_replica(tokens(600, math.nan, 2)))
    assert math.isnan(tokens_per_minute_per_replica(tokens(600, 400, 0)))


@pytest.mark.parametrize(("snapshot", "current", "expected"), [
    (tokens(600, 400, 2), 2, 4),  # 30,000 > 25,000: +2
    (tokens(100, 100, 2), 2, 1),  # 6,000 < 10,000: -1
    (tokens(300, 100, 2), 2, 2),  # 12,000: within the band
    (tokens(6000, 0, 9), 9, 10),  # 40,000 > 25,000 but +2 would pass max 10
    (tokens(0, 0, 1), 1, 1),  # 0 < 10,000 but already at min 1
])
def test_threshold_steps_within_bounds(snapshot, current, expected):
    policy = ThresholdPolicy(scale_up_tpm=25_000, scale_down_tpm=10_000, step_up=2, step_down=1)
    proposal, state = policy.decide(snapshot, ctx(current), policy.initial_state())
    assert proposal.replicas == expected and state is None and proposal.reasons


def test_threshold_without_token_rates_has_no_proposal():
    policy = ThresholdPolicy(25_000, 10_000)
    proposal, _ = policy.decide({"replicas_ready": 2.0}, ctx(2), None)
    assert not proposal.valid
    # Through decide, a missing token rate makes the snapshot stale: the stale rule holds the replicas.
    from controller.autoscaling import Autoscaler, decide
    from controller.guardrails import Behavior

    autoscaler = Autoscaler(policy, Behavior(1, 8, scale_down_stabilization_s=0))
    snapshot = {"requests_running": 1.0, "requests_waiting": 0.0, "replicas_ready": 4.0, "prompt_token_rate": 10.0}
    record, _ = decide(autoscaler, snapshot, 0.0, 4, autoscaler.initial_state())
    assert record.stale and record.final == 4 and "generation_token_rate" in record.policy_reasons[-1]


def test_threshold_rejects_inverted_bands_and_bad_steps():
    with pytest.raises(ValueError, match="scale_down_tpm < scale_up_tpm"):
        ThresholdPolicy(10, 20)
    with pytest.raises(ValueError, match="steps"):
        ThresholdPolicy(20, 10, step_up=0)


def test_fixed_is_constant():
    policy = FixedPolicy(3)
    for current in (1, 3, 7):
        proposal, state = policy.decide({}, ctx(current), policy.initial_state())
        assert proposal.replicas == 3 and state is None
    with pytest.raises(ValueError, match="replicas"):
        FixedPolicy(-1)


def test_threshold_edges_are_inside_the_band():
    """Strictly above scale_up_tpm adds, strictly below scale_down_tpm removes: the edges hold."""
    policy = ThresholdPolicy(scale_up_tpm=30_000, scale_down_tpm=6_000, step_up=1, step_down=2)
    assert policy.decide(tokens(600, 400, 2), ctx(4), None)[0].replicas == 4  # exactly 30,000
    assert policy.decide(tokens(100, 100, 2), ctx(4), None)[0].replicas == 4  # exactly 6,000
    assert policy.decide(tokens(100, 99, 2), ctx(4), None)[0].replicas == 2  # 5,970: -2
    up = policy.decide(tokens(601, 400, 2), ctx(4), None)[0]
    assert up.replicas == 5 and up.reasons == ("30030 tokens/min/replica > 30000",)
    assert policy.decide(tokens(100, 99, 2), ctx(4), None)[0].reasons == ("5970 tokens/min/replica < 6000",)
    assert policy.decide(tokens(300, 100, 2), ctx(4), None)[0].reasons == ("12000 tokens/min/replica within thresholds",)
    assert policy.decide({}, ctx(4), None)[0].reasons == ("token rates unavailable",)


def test_threshold_parameter_bounds_and_messages():
    assert ThresholdPolicy(10, 0).scale_down_tpm == 0  # a zero lower band is allowed
    assert ThresholdPolicy(10, 0.5).scale_down_tpm == 0.5
    with pytest.raises(ValueError, match=r"^need 0 <= scale_down_tpm < scale_up_tpm, got 10, 10$"):
        ThresholdPolicy(10, 10)
    with pytest.raises(ValueError, match=r"^steps must be >= 1$"):
        ThresholdPolicy(10, 5, step_down=0)
