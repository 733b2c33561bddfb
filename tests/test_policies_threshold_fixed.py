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
    assert policy.required_signals == ("prompt_token_rate", "generation_token_rate")


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
