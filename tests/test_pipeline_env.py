"""``kis/Pipeline-v0``: the Gymnasium checker, the shared GPU budget, episodes end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import simulator.envs  # noqa: F401  (registers the environments)


def make(**kwargs):
    return gym.make("kis/Pipeline-v0", duration_s=120.0, **kwargs).unwrapped


def test_the_gymnasium_checker_passes():
    check_env(make(), skip_render_check=True)


def test_the_shared_budget_caps_the_total_replicas():
    env = make(gpu_budget=5)
    env.reset(seed=0)
    for _ in range(4):
        _, _, _, _, info = env.step(np.array([2, 2, 2]))  # one more everywhere
        assert sum(info["replicas"].values()) <= 5
    assert sum(info["replicas"].values()) == 5


def test_an_episode_ends_at_the_workload_duration_and_observations_fit_the_space():
    env = make(pipeline="disagg", pattern="spike")
    obs, _ = env.reset(seed=1)
    steps, terminated = 0, False
    while not terminated:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        steps += 1
    assert steps == 8  # 120 s at 15 s a step
