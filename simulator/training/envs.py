"""Environments built from a training config."""

from __future__ import annotations

from simulator.envs.autoscale import AutoscaleEnv, Randomization, RewardWeights, WorkloadSampler, preset_sampler
from simulator.training.config import TrainConfig


def workload_sampler(config: TrainConfig) -> WorkloadSampler:
    """The config's training traffic: randomised episodes, or the named presets."""
    env = config.env
    if env.randomized is not None:
        from simulator.workloads.randomized import RandomizedSpec, randomized_sampler

        return randomized_sampler(RandomizedSpec(duration_s=env.episode_duration_s, **env.randomized.model_dump()))
    return preset_sampler(env.workloads, duration_s=env.episode_duration_s)


def make_env(config: TrainConfig) -> AutoscaleEnv:
    """An ``AutoscaleEnv`` drawing the config's training workloads with domain randomisation."""
    env = config.env
    return AutoscaleEnv(
        config.cluster.build(),
        workload_sampler(config),
        slo=env.slo,
        interval_s=env.interval_s,
        min_replicas=env.min_replicas,
        max_replicas=env.max_replicas,
        initial_replicas=env.initial_replicas,
        action_mode=env.action_mode,
        steps=env.steps,
        planner=env.planner,
        behavior=env.behavior,
        reward=RewardWeights(cost_weight=env.cost_weight, slo_weight=env.slo_weight),
        randomization=Randomization(rate_scale=env.rate_scale, cold_start_scale=env.cold_start_scale, gpus=env.gpus,
                                    cold_start_s=env.cold_start_s, initial_replicas=env.initial_replicas_range, peak_load=env.peak_load),
    )
