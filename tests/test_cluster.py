"""The simulated cluster: scheduling, pod lifecycle, draining, cost, routing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.cluster.cluster import Cluster, PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.cluster.router import LeastConnections, LeastLoaded, RandomRouter, RoundRobin, make_router
from simulator.engine.replica import EngineConfig
from tests.toy import AffineLatency, poisson_workload

PRICE_PER_HOUR = 3.6  # 0.001 USD per GPU-second


def make_cluster(workload, *, pools=(NodePool(gpus_per_node=2, initial_nodes=1, max_nodes=2, provisioning_delay_s=100),),
                 lifecycle=PodLifecycle(image_pull_s=20, image_pull_cached_s=2, model_load_s=40, jitter=0.0),
                 replicas=1, router="least_connections", seed=0, speeds=None):
    config = ClusterConfig(pools=tuple(pools), lifecycle=lifecycle, router=router)
    runtimes = tuple(
        PoolRuntime(p, AffineLatency(scale=1.0 / (speeds[i] if speeds else 1.0)), EngineConfig(kv_capacity_tokens=200_000),
                    PRICE_PER_HOUR / 3600, speed=speeds[i] if speeds else 1.0)
        for i, p in enumerate(pools)
    )
    return Cluster(config, workload, runtimes, initial_replicas=replicas, rng=np.random.default_rng(seed))


def test_never_more_gpus_in_use_than_exist_and_pending_until_node_arrives():
    workload = poisson_workload(rate=5, duration=600, seed=0)
    cluster = make_cluster(workload, replicas=1)
    cluster.run_until(10)
    cluster.scale(4)  # 2 GPUs on the first node; the other 2 pods need a new node (100 s)
    phases = cluster.pods_by_phase()
    assert phases["Pending"] == 2 and phases["Starting"] == 1 and phases["Ready"] == 1
    cluster.run_until(109)
    assert cluster.pods_by_phase()["Pending"] == 2  # node not there yet
    cluster.run_until(111)
    assert cluster.pods_by_phase()["Pending"] == 0  # scheduled on the new node
    for t in range(120, 600, 15):
        cluster.run_until(t)
        total_gpus = sum(n.pool.pool.gpus_per_node for n in cluster.nodes)
        assert cluster.gpus_in_use <= total_gpus
        assert all(n.gpus_free >= 0 for n in cluster.nodes)
    cluster.scale(8)  # max 2 nodes x 2 GPUs: 4 pods stay Pending forever
    cluster.run_until(1000)
    assert cluster.gpus_in_use == 4
    assert cluster.pods_by_phase()["Pending"] == 4


def test_starting_replica_serves_no_request_before_ready():
    workload = poisson_workload(rate=10, duration=300, seed=1)
    cluster = make_cluster(workload, replicas=1)
    cluster.run_until(5)
    cluster.scale(2)  # same node, image cached: ready at 5 + 2 + 40 = 47 s
    cluster.run_until(300)
    cluster.finish()
    new_pod = max(cluster._ready, key=lambda p: p.pid)
    assert new_pod.ready_s == pytest.approx(47.0)
    # Every request served by the new pod was admitted after it became Ready.
    served_after = [f for f in cluster.finished if f.admitted_s < new_pod.ready_s]
    assert len(cluster.finished) == len(workload)
    assert new_pod.engine is not None
    assert all(f.first_token_s >= f.arrival_s for f in cluster.finished)
    assert len(served_after) < len(workload)


def test_draining_loses_no_request():
    workload = poisson_workload(rate=30, duration=240, seed=2)
    cluster = make_cluster(workload, replicas=2)
    for t in range(15, 241, 15):
        cluster.run_until(t)
        cluster.scale(1 if (t // 15) % 2 else 2)
    cluster.finish()
    assert len(cluster.finished) + cluster.rejected + cluster.unserved == len(workload)
    assert cluster.rejected == 0 and cluster.unserved == 0
    assert sorted(f.rid for f in cluster.finished) == list(range(len(workload)))


def test_requests_wait_in_gateway_when_nothing_is_ready():
    workload = poisson_workload(rate=5, duration=200, seed=3)
    cluster = make_cluster(workload, replicas=0)
    cluster.scale(1)  # initial nodes hold the image: ready at 2 + 40 = 42 s
    cluster.run_until(200)
    cluster.finish()
    early = [f for f in cluster.finished if f.arrival_s < 42]
    assert early and all(f.admitted_s >= 42 for f in early)
    assert len(cluster.finished) == len(workload)


def test_cost_accrues_from_scheduling_to_termination():
    workload = poisson_workload(rate=0.01, duration=1000, seed=4)
    cluster = make_cluster(workload, replicas=1)
    cluster.run_until(100)
    cluster.scale(2)  # scheduled at 100, starting (billed) immediately
    cluster.run_until(130)  # not ready yet (100 + 2 + 40 = 142) but billed
    assert cluster.pods_by_phase()["Starting"] == 1
    assert cluster.gpu_seconds() == pytest.approx(130 + 30)
    cluster.run_until(200)
    cluster.scale(1)
    cluster.run_until(300)
    # pod 0: 0..300; pod 1: 100..200 (drained at once: idle)
    assert cluster.gpu_seconds() == pytest.approx(300 + 100, abs=1.0)
    assert cluster.cost_usd() == pytest.approx(cluster.gpu_seconds() * PRICE_PER_HOUR / 3600)


def test_pending_pods_cost_nothing():
    workload = poisson_workload(rate=0.01, duration=100, seed=5)
    pools = (NodePool(gpus_per_node=1, initial_nodes=1, max_nodes=1),)
    cluster = make_cluster(workload, pools=pools, replicas=1)
    cluster.scale(3)
    cluster.run_until(100)
    assert cluster.pods_by_phase()["Pending"] == 2
    assert cluster.gpu_seconds() == pytest.approx(100)


def test_scale_down_removes_not_ready_then_newest():
    workload = poisson_workload(rate=1, duration=400, seed=6)
    cluster = make_cluster(workload, replicas=2)
    cluster.run_until(100)
    cluster.scale(3)  # one starting pod
    cluster.scale(2)  # removes the starting pod, not a ready one
    assert cluster.pods_by_phase() == {"Pending": 0, "Starting": 0, "Ready": 2, "Draining": 0}
    cluster.scale(1)
    remaining = [p.pid for p in cluster._ready]
    assert remaining == [0]  # the newest ready pod (1) went


class _View:
    def __init__(self, outstanding, tokens, speed=1.0):
        self.num_outstanding, self.outstanding_tokens, self.speed = outstanding, tokens, speed


def test_routers_distribute_as_specified():
    views = [_View(3, 900), _View(1, 5000), _View(2, 100)]
    rr = RoundRobin()
    assert [rr.choose(views, 1, 1) for _ in range(5)] == [0, 1, 2, 0, 1]
    assert LeastConnections().choose(views, 1, 1) == 1
    assert LeastLoaded().choose(views, 1, 1) == 2
    fast = [_View(0, 1000, speed=1.0), _View(0, 1500, speed=2.0)]
    assert LeastLoaded().choose(fast, 1, 1) == 1  # 1500/2 < 1000/1
    picks = [RandomRouter(np.random.default_rng(0)).choose(views, 1, 1) for _ in range(1)]
    counts = np.bincount([RandomRouter(np.random.default_rng(s)).choose(views, 1, 1) for s in range(600)], minlength=3)
    assert picks[0] in (0, 1, 2) and all(150 < c < 250 for c in counts)
    with pytest.raises(ValueError, match="unknown router"):
        make_router("fastest", np.random.default_rng(0))


def test_round_robin_spreads_requests_evenly_in_the_cluster():
    workload = poisson_workload(rate=20, duration=120, seed=7)
    cluster = make_cluster(workload, replicas=2, router="round_robin")
    per_pod = {p.pid: 0 for p in cluster._ready}
    router = cluster.router

    class Counting:  # the router's choices, counted by the pod they send to
        name = router.name

        def choose(self, replicas, prompt_tokens, output_tokens):
            index = router.choose(replicas, prompt_tokens, output_tokens)
            per_pod[replicas[index].pid] += 1
            return index

    cluster.router = Counting()
    cluster.run_until(120)
    assert sum(per_pod.values()) > 2000 and abs(per_pod[0] - per_pod[1]) <= 1


def test_heterogeneous_pools_serve_at_different_speeds():
    workload = poisson_workload(rate=4, duration=300, seed=8)
    pools = (NodePool(name="fast", gpus_per_node=1, initial_nodes=1, max_nodes=1),
             NodePool(name="slow", gpus_per_node=1, initial_nodes=1, max_nodes=1))
    cluster = make_cluster(workload, pools=pools, replicas=2, router="round_robin", speeds=[1.0, 0.25])
    cluster.run_until(300)
    cluster.finish()
    fast_pod, slow_pod = cluster._ready
    assert fast_pod.speed == 1.0 and slow_pod.speed == 0.25
    assert fast_pod.engine.busy_s < slow_pod.engine.busy_s


def test_same_seed_same_trajectory():
    def run(seed):
        workload = poisson_workload(rate=10, duration=300, seed=9)
        cluster = make_cluster(workload, replicas=1, seed=seed, lifecycle=PodLifecycle(jitter=0.5), router="random")
        trace = []
        for t in range(15, 301, 15):
            cluster.run_until(t)
            snap = cluster.snapshot()
            trace.append(tuple(round(v, 9) if not math.isnan(v) else None for v in snap.values()))
            cluster.scale(1 + (t // 90) % 3)
        return trace, [f[4] for f in sorted(cluster.finished)]
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_snapshot_matches_prometheus_semantics():
    workload = poisson_workload(rate=10, duration=300, seed=10)
    cluster = make_cluster(workload, replicas=2)
    snaps = []
    for t in range(15, 301, 15):
        cluster.run_until(t)
        snaps.append(cluster.snapshot())
    last = snaps[-1]
    done_in_window = sum(1 for f in cluster.finished if 240 < f.finish_s <= 300)
    assert last["request_rate"] == pytest.approx(done_in_window / 60, abs=0.05)
    assert math.isnan(snaps[0]["request_rate_long"]) is False
    assert 0 < last["gpu_utilization"] <= 100
    assert 0 <= last["kv_cache_usage"] <= 1
    assert last["replicas_ready"] == 2 and last["replicas_desired"] == 2 and last["replicas_starting"] == 0
    assert last["ttft_p95"] > 0
