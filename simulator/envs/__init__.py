"""Gymnasium environments of KIS-S. Importing this package registers them:

- ``kis/Autoscale-v0``: replica steps ``-2..+2`` on one H100 pool (the main one);
- ``kis/AutoscaleTarget-v0``: the same with a target-replica action;
- ``kis/AutoscaleHetero-v0``: an H100 pool and a cheaper L4 pool behind one router;
- ``kis/Pipeline-v0``: every stage of a multi-stage pipeline under a shared GPU budget.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from simulator.envs.autoscale import AutoscaleEnv, Randomization, RewardWeights, preset_sampler

__all__ = ["AutoscaleEnv", "RewardWeights", "Randomization", "preset_sampler"]


def _register() -> None:
    if "kis/Autoscale-v0" in registry:
        return
    register(id="kis/Autoscale-v0", entry_point="simulator.envs.autoscale:AutoscaleEnv")
    register(id="kis/AutoscaleTarget-v0", entry_point="simulator.envs.autoscale:AutoscaleEnv", kwargs={"action_mode": "target"})
    register(id="kis/AutoscaleHetero-v0", entry_point="simulator.envs.hetero:make_hetero_env")
    register(id="kis/Pipeline-v0", entry_point="simulator.envs.pipeline:PipelineEnv")


_register()
