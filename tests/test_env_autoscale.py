"""kis/Autoscale-v0: checkers, determinism, reward and action semantics."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.engine.replica import EngineConfig
from simulator.envs.autoscale import AutoscaleEnv, RewardWeights
from tests.toy import AffineLatency, poisson_workload

POOL = NodePool(gpus_per_node=8, initial_nodes=1, max_nodes=1)
CONFIG = ClusterConfig(pools=(POOL,), lifecycle=PodLifecycle(image_pull_s=10, image_pull_cached_s=1, model_load_s=20, jitter=0.1))
PRICE = 3.6 / 3600


def toy_pools(scale: float = 1.0):
    return (PoolRuntime(POOL, AffineLatency(scale=scale), EngineConfig(kv_capacity_tokens=100_000, max_num_seqs=32), PRICE),)


def sampler(rng):
    return poisson_workload(rate=float(rng.uniform(5, 15)), duration=600, seed=int(rng.integers(1000)))


def make_env(**kwargs):
    kwargs.setdefault("pools", toy_pools())
    return AutoscaleEnv(CONFIG, sampler, **kwargs)


def test_gymnasium_checker_passes():
    check_env(make_env(), skip_render_check=True)


def test_stable_baselines3_checker_passes():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(make_env(), warn=True)


def rollout(env, seed, policy):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        trace.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            return np.array(trace), np.array(rewards), info


def test_same_seed_same_trajectory():
    policy = lambda obs: int(obs[5] > 0.1) * 2 + 1  # noqa: E731 - scale on waiting
    a = rollout(make_env(), 3, policy)
    b = rollout(make_env(), 3, policy)
    c = rollout(make_env(), 4, policy)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_episode_is_one_workload_window():
    env = make_env(interval_s=15)
    obs, rewards, info = rollout(env, 0, lambda o: 2)
    # the first interval runs in reset (as in the evaluation runner): decisions at 15, 30, ..., 585 s
    assert len(rewards) == 600 // 15 - 1
    assert env.observation_space.contains(obs[-1])


def test_reward_is_cost_plus_weighted_misses():
    env = make_env(action_mode="step", reward=RewardWeights(cost_weight=2.0, slo_weight=0.5))
    env.reset(seed=1)
    _, reward, _, _, info = env.step(4)  # +2 replicas at t = 15 s
    assert reward == pytest.approx(-2.0 * info["cost_usd"] - 0.5 * info["slo_misses"])
    # 1 ready for 15 s + 2 starting pods billed from their scheduling at t = 15 s.
    assert info["cost_usd"] == pytest.approx(3 * 15 * PRICE)


def test_step_actions_are_bounded_and_target_mode_sets_replicas():
    env = make_env(action_mode="step", min_replicas=1, max_replicas=3, initial_replicas=1)
    env.reset(seed=0)
    for _ in range(4):
        _, _, _, _, info = env.step(4)  # +2 each time, clipped at 3
    assert info["desired"] == 3
    for _ in range(3):
        _, _, _, _, info = env.step(0)  # -2 each time, clipped at 1
    assert info["desired"] == 1
    target = make_env(action_mode="target", min_replicas=2, max_replicas=5, initial_replicas=2)
    assert target.action_space.n == 4
    target.reset(seed=0)
    _, _, _, _, info = target.step(3)
    assert info["desired"] == 5


def test_residual_action_is_the_planners_proposal_plus_the_step():
    env = make_env(max_replicas=8, steps=(-1, 0, 1, 2))
    env.reset(seed=2)
    for action in (3, 0, 2, 1, 3, 0):
        ctx = env.autoscaler.context(env._t, env._cluster.desired)
        planned, _ = env.policy.planner.decide(env.last_snapshot, ctx, env._state.policy_state.planner)
        _, _, _, _, info = env.step(action)
        assert planned.valid and info["proposal"] == planned.replicas + env.steps[action]
        assert info["desired"] == min(max(info["proposal"], 1), 8)


def test_the_env_decides_through_the_guardrails():
    """The agent's proposal goes through the same guardrails as online: a step limit caps a +2 to +1."""
    env = make_env(action_mode="step", behavior={"max_step_up": 1})
    env.reset(seed=0)
    before = env._cluster.desired
    _, _, _, _, info = env.step(4)
    assert info["proposal"] == before + 2 and info["desired"] == before + 1
    assert [s.guard for s in env.last_decision.steps] == ["ScaleUpLimit"]


def test_more_replicas_fewer_misses_more_cost():
    def totals(replicas):
        env = make_env(action_mode="step", pools=toy_pools(scale=6.0), max_replicas=8)
        env.reset(seed=5)
        misses = cost = 0.0
        desired = env.initial_replicas
        while True:
            _, _, _, truncated, info = env.step(3 if desired < replicas else 2)
            desired = info["desired"]
            misses += info["slo_misses"]
            cost += info["cost_usd"]
            if truncated:
                return misses, cost
    few, many = totals(1), totals(6)
    assert many[0] < few[0]
    assert many[1] > few[1]


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="min_replicas"):
        make_env(min_replicas=3, initial_replicas=1)
    with pytest.raises(ValueError, match="steps must include 0"):
        make_env(steps=(-1, 1))
    env = make_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
