"""Reinforcement-learning load balancing across heterogeneous LLM servers (``kis/LoadBalance-v0``)."""

from gymnasium.envs.registration import register, registry

from simulator.lb.env import LoadBalanceEnv, RewardWeights, ServerSpec

__all__ = ["LoadBalanceEnv", "RewardWeights", "ServerSpec"]


def _make(scenario: str = "high-load-hetero", requests: int = 1000) -> LoadBalanceEnv:
    from simulator.lb.experiment import make_env, scenarios

    return make_env(scenarios(requests)[scenario])


if "kis/LoadBalance-v0" not in registry:
    register(id="kis/LoadBalance-v0", entry_point="simulator.lb:_make")
