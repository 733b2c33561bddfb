"""Environments built from a training config."""

from __future__ import annotations

from simulator.envs.autoscale import AutoscaleEnv, Randomization, RewardWeights, preset_sampler
from simulator.training.config import TrainConfig


def make_env(config: TrainConfig) -> AutoscaleEnv:
    """An ``AutoscaleEnv`` drawing the config's training workloads with domain randomisation."""
    env = config.env
    return AutoscaleEnv(
        config.cluster.build(),
        preset_sampler(env.workloads, duration_s=env.episode_duration_s),
        slo=env.slo,
        interval_s=env.interval_s,
        min_replicas=env.min_replicas,
        max_replicas=env.max_replicas,
        initial_replicas=env.initial_replicas,
        steps=env.steps,
        reward=RewardWeights(cost_weight=env.cost_weight, slo_weight=env.slo_weight),
        randomization=Randomization(rate_scale=env.rate_scale, cold_start_scale=env.cold_start_scale),
    )
