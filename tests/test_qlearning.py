"""Tabular Q-learning learns a trivially learnable autoscaling case."""

from __future__ import annotations

import numpy as np

from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.engine.replica import EngineConfig
from simulator.envs.autoscale import AutoscaleEnv, RewardWeights
from simulator.training.qlearning import QConfig, QTable, train_qlearning, write_episode_log
from tests.toy import AffineLatency, poisson_workload

POOL = NodePool(gpus_per_node=8, initial_nodes=1, max_nodes=1)
CONFIG = ClusterConfig(pools=(POOL,), lifecycle=PodLifecycle(image_pull_s=1, image_pull_cached_s=1, model_load_s=4, jitter=0.0))
POOLS = (PoolRuntime(POOL, AffineLatency(scale=4.0), EngineConfig(kv_capacity_tokens=100_000, max_num_seqs=16), 3.6 / 3600),)


def heavy_env():
    # Constant heavy load: one or two replicas miss most SLOs, three meet them.
    sampler = lambda rng: poisson_workload(rate=6, duration=300, seed=int(rng.integers(100)))  # noqa: E731
    return AutoscaleEnv(CONFIG, sampler, pools=POOLS, max_replicas=4, initial_replicas=1, action_mode="step", steps=(-1, 0, 1),
                        reward=RewardWeights(cost_weight=1.0, slo_weight=1.0))


def test_q_learning_learns_to_scale_up_under_heavy_load(tmp_path):
    env = heavy_env()
    table, logs = train_qlearning(env, QConfig(episodes=40, alpha=0.3, gamma=0.9, load_edges=(1000, 3000, 6000), seed=1))
    first = np.mean([log.reward for log in logs[:5]])
    last = np.mean([log.reward for log in logs[-5:]])
    assert last > first
    assert np.mean([log.slo_misses for log in logs[-5:]]) < np.mean([log.slo_misses for log in logs[:5]])
    # The greedy table, run through the shared decide like any policy, scales one replica up under this load.
    from controller.guardrails import Behavior
    from simulator.runner import decider, sim_autoscaler, simulate

    autoscaler = sim_autoscaler(table.as_policy(), CONFIG, Behavior(1, 4), pools=POOLS)
    result = simulate(poisson_workload(rate=6, duration=300, seed=7), CONFIG, replicas=1, decide=decider(autoscaler), pools=POOLS)
    assert max(r.final for r in result.decisions) >= 3 and result.decisions[0].policy == "qlearning"
    write_episode_log(logs, tmp_path / "episodes.csv")
    rows = (tmp_path / "episodes.csv").read_text().splitlines()
    assert rows[0] == "episode,epsilon,reward,slo_misses,gpu_hours,steps" and len(rows) == 41
    table.save(tmp_path / "q.npz")
    again = QTable.load(tmp_path / "q.npz")
    np.testing.assert_array_equal(again.values, table.values)
    assert again.steps == (-1, 0, 1)
