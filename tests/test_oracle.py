"""The clairvoyant oracle: schedule construction and its cost against fixed fleets."""

from __future__ import annotations

import numpy as np
import pytest

from controller.slo import SLO
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.engine.replica import EngineConfig
from simulator.evaluation.oracle import oracle, schedule_for_capacity
from simulator.runner import simulate
from simulator.workloads.workload import Workload
from tests.toy import AffineLatency, poisson_workload

POOL = NodePool(gpus_per_node=8, initial_nodes=1, max_nodes=1)
CONFIG = ClusterConfig(pools=(POOL,), lifecycle=PodLifecycle(image_pull_s=10, image_pull_cached_s=2, model_load_s=20, jitter=0.0))
POOLS = (PoolRuntime(POOL, AffineLatency(scale=3.0), EngineConfig(kv_capacity_tokens=60_000, max_num_seqs=32), 1 / 3600),)


def burst_workload(seed=0, duration=900.0):
    """Base 4 req/s with a 3-minute burst at 20 req/s starting at 5 minutes."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, duration, rng.poisson(4 * duration))
    burst = rng.uniform(300, 480, rng.poisson(16 * 180))
    arrivals = np.sort(np.concatenate([base, burst]))
    n = len(arrivals)
    return Workload(arrivals, rng.integers(100, 1500, n), rng.integers(20, 200, n), duration, "burst")


def test_schedule_scales_up_one_cold_start_ahead_and_down_at_once():
    demand = np.array([0, 0, 0, 0, 30, 30, 0, 0, 0], dtype=float)
    # capacity 1 work-s/s over 15 s intervals: 30 s of work needs 2 replicas.
    schedule = schedule_for_capacity(demand, 1.0, 15.0, cold_start_s=30.0, min_replicas=1, max_replicas=8)
    # need (with spill-over from the next interval): [0,0,0,2,2,2,0,0,0]; two intervals ahead:
    assert schedule.tolist() == [1, 2, 2, 2, 2, 2, 1, 1, 1]


def test_oracle_meets_target_and_costs_no_more_than_any_fixed_fleet_that_does():
    workload = burst_workload()
    slo = SLO(0.5, 0.05)
    found = oracle(workload, CONFIG, POOLS, slo=slo, target_attainment=0.95, max_replicas=8)
    assert found.met_target
    oracle_summary = found.result.summary()
    assert oracle_summary["slo_attainment"] >= 0.95
    meeting = []
    for replicas in range(1, 9):
        fixed = simulate(workload, CONFIG, replicas=replicas, slo=slo, pools=POOLS).summary()
        if fixed["slo_attainment"] >= oracle_summary["slo_attainment"]:
            meeting.append(fixed["cost_usd"])
    assert meeting, "some fixed fleet must reach the target on this case"
    assert oracle_summary["cost_usd"] <= min(meeting)
    # The schedule follows the burst: more replicas during it than before it.
    assert found.schedule[20:32].max() > found.schedule[:10].max()


def test_oracle_rejects_bad_target():
    with pytest.raises(ValueError, match="target_attainment"):
        oracle(burst_workload(), CONFIG, POOLS, target_attainment=1.5)


def test_the_oracle_runs_on_a_32_replica_cluster_that_starts_above_its_initial_nodes():
    """Four 8-GPU nodes, one present at the start: a schedule that starts above 8 replicas warm-starts the
    nodes it needs (as if they had been running)."""
    pool = NodePool(gpus_per_node=8, initial_nodes=1, max_nodes=4, provisioning_delay_s=60)
    config = ClusterConfig(pools=(pool,), lifecycle=PodLifecycle(image_pull_s=10, image_pull_cached_s=2, model_load_s=20, jitter=0.0))
    pools = (PoolRuntime(pool, AffineLatency(scale=3.0), EngineConfig(kv_capacity_tokens=60_000, max_num_seqs=32), 1 / 3600),)
    workload = poisson_workload(rate=300, duration=240, seed=3, prompt=(100, 400), output=(10, 60))
    found = oracle(workload, config, pools, target_attainment=0.9, max_replicas=32, iterations=3)
    assert found.schedule[0] > 8 and found.result.summary()["slo_attainment"] >= 0.9
    heavy = simulate(workload, config, replicas=16, pools=pools)  # the warm start beyond one node
    assert heavy.timeline.ready[0] == 16
    with pytest.raises(ValueError, match="exceeds the GPUs the node pools can hold"):
        simulate(workload, config, replicas=33, pools=pools)
