"""kis/LoadBalance-v0: checkers, baselines, determinism, and a trained router that must beat random."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import simulator.lb  # noqa: F401 - registers the environment
from simulator.lb.env import LoadBalanceEnv, ServerSpec
from simulator.lb.experiment import HETEROGENEOUS, Scenario, _poisson, baseline_chooser, make_env, model_chooser, run_episode, scenarios


def small_env():
    return LoadBalanceEnv(HETEROGENEOUS, _poisson(8.0, 200))


def test_checkers_pass():
    check_env(small_env(), skip_render_check=True)
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(small_env(), warn=True)
    env = gymnasium.make("kis/LoadBalance-v0", scenario="nominal", requests=50)
    assert env.action_space.n == 3


def test_baselines_route_as_specified():
    env = small_env()
    rr = run_episode(env, baseline_chooser("round_robin", 0), 1, "round_robin", "s")
    assert max(rr.per_server) - min(rr.per_server) <= 1
    loaded = run_episode(small_env(), baseline_chooser("least_loaded", 0), 1, "least_loaded", "s")
    assert loaded.per_server[2] > loaded.per_server[0]  # the 7k server takes more than the 3k one
    random = run_episode(small_env(), baseline_chooser("random", 0), 1, "random", "s")
    assert loaded.mean_response_s < random.mean_response_s and loaded.slo_violation_rate <= random.slo_violation_rate


def test_same_seed_same_episode():
    a = run_episode(small_env(), baseline_chooser("least_connections", 0), 7, "lc", "s")
    b = run_episode(small_env(), baseline_chooser("least_connections", 0), 7, "lc", "s")
    c = run_episode(small_env(), baseline_chooser("least_connections", 0), 8, "lc", "s")
    assert a == b and a.response_times != c.response_times


def test_scenarios_match_the_experiment():
    known = scenarios(100)
    assert {"nominal", "high-load-hetero", "bursty"} <= set(known)
    hetero = known["high-load-hetero"].servers
    assert [(s.tokens_per_s, s.concurrency) for s in hetero] == [(3000, 3), (5000, 5), (7000, 7)]


@pytest.mark.train
def test_trained_router_beats_random_where_it_must():
    pytest.importorskip("stable_baselines3")
    from simulator.lb.experiment import train_agent

    # One server ten times faster than the other two: sending everything there is right.
    servers = (ServerSpec("slow-a", 1000, 4), ServerSpec("fast", 10_000, 16), ServerSpec("slow-b", 1000, 4))
    scenario = Scenario("one-fast", servers, _poisson(3.0, 150))
    model = train_agent("ppo", scenario, 6000, seed=0)
    learned = run_episode(make_env(scenario), model_chooser(model), 99, "ppo", "one-fast")
    random = run_episode(make_env(scenario), baseline_chooser("random", 0), 99, "random", "one-fast")
    assert learned.mean_response_s < random.mean_response_s
    assert learned.per_server[1] > np.mean([learned.per_server[0], learned.per_server[2]])


@pytest.mark.train
def test_trained_router_plugs_into_the_cluster_simulator(tmp_path):
    pytest.importorskip("stable_baselines3")
    from simulator.cluster.cluster import Cluster, PoolRuntime
    from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
    from simulator.cluster.router import make_router
    from simulator.engine.replica import EngineConfig
    from simulator.lb.experiment import train_agent
    from tests.toy import AffineLatency, poisson_workload

    scenario = Scenario("tiny", HETEROGENEOUS, _poisson(6.0, 100))
    train_agent("dqn", scenario, 600, seed=0, out=tmp_path)
    path = tmp_path / "dqn-tiny.zip"
    router = make_router(f"learned:{path}", np.random.default_rng(0))
    assert router.name == "learned" and router.n == 3
    pool = NodePool(gpus_per_node=4, initial_nodes=1, max_nodes=1)
    config = ClusterConfig(pools=(pool,), lifecycle=PodLifecycle(jitter=0.0), router=f"learned:{path}")
    runtime = (PoolRuntime(pool, AffineLatency(), EngineConfig(100_000), 1 / 3600),)
    cluster = Cluster(config, poisson_workload(rate=10, duration=60), runtime, initial_replicas=3, rng=np.random.default_rng(0))
    cluster.run_until(60)
    cluster.finish()
    assert len(cluster.finished) == len(cluster.workload)
    with pytest.raises(ValueError, match="must start with"):
        make_router(f"learned:{tmp_path / 'router.zip'}", np.random.default_rng(0))
