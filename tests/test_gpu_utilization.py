"""GPU utilisation defined as dcgm-exporter's DCGM_FI_DEV_GPU_UTIL, the same way in the stub and in the simulator."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller import signals as sig
from simulator.cluster.cluster import Cluster, PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.engine.activity import KernelActivity
from simulator.engine.replica import EngineConfig, ReplicaEngine
from simulator.stub.driver import RealTimeEngine
from simulator.stub.metrics import EngineCollector
from simulator.workloads.workload import Workload

ENGINE = EngineConfig(kv_capacity_tokens=100_000, max_num_seqs=64, max_batched_tokens=2048)


class TenMs:
    """Every iteration takes 10 ms: a request of ``n`` output tokens keeps the engine busy ``n * 10`` ms."""

    def iteration_ms(self, prefill_tokens, prefill_context, decode_batch, decode_context, prefill_seqs=1):
        return 10.0

    def prefill_ms(self, batch, prompt_len):
        return 10.0

    def decode_ms(self, batch, context_len):
        return 10.0


# requests (arrival s, output tokens): busy 0.0-0.5 s, 0.8-1.0 s, 3.0-3.1 s
REQUESTS = ((0.0, 50), (0.8, 20), (3.0, 10))
#: DCGM_FI_DEV_GPU_UTIL: percent of the second before each instant during which a kernel ran.
EXPECTED = {0.3: 30.0, 0.5: 50.0, 1.2: 50.0, 1.6: 20.0, 2.5: 0.0, 3.05: 5.0}


def test_kernel_activity_worked_numbers():
    engine, activity = ReplicaEngine(TenMs(), ENGINE), KernelActivity()
    pending = list(REQUESTS)
    for t in sorted(EXPECTED):
        while pending and pending[0][0] <= t:
            arrival, output = pending.pop(0)
            engine.advance(arrival)
            activity.before_submit(engine, arrival)
            engine.submit(len(REQUESTS) - len(pending), arrival, 100, output)
        engine.advance(t)
        # at 1.2 s: (0.2, 1.2] holds 0.3 s of the first request and 0.2 s of the second
        assert activity.utilization(engine, t) == pytest.approx(EXPECTED[t], abs=1e-6), t


def _stub_values() -> dict[float, float]:
    clock = [0.0]
    driver = RealTimeEngine(ReplicaEngine(TenMs(), ENGINE), clock=lambda: clock[0])
    registry = CollectorRegistry()
    registry.register(EngineCollector(driver.engine, "m", 0.0, 0.0, driver.now, driver.activity,
                                      request_tokens=(driver.prompt_tokens, driver.generation_tokens)))
    values, pending = {}, list(REQUESTS)
    for t in sorted(EXPECTED):
        while pending and pending[0][0] <= t:
            clock[0], output = pending.pop(0)
            driver.submit(100, output)
        clock[0] = t
        driver.step()
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        values[t] = families[sig.GPU_UTIL].samples[0].value
    return values


def _simulator_values() -> dict[float, float]:
    workload = Workload(np.array([r[0] for r in REQUESTS]), np.full(len(REQUESTS), 100), np.array([r[1] for r in REQUESTS]), 4.0)
    pool = NodePool("p", "H100", gpus_per_node=1, initial_nodes=1, max_nodes=1)
    cluster = Cluster(ClusterConfig(pools=(pool,), lifecycle=PodLifecycle(jitter=0.0)), workload, (PoolRuntime(pool, TenMs(), ENGINE, 0.0),),
                      initial_replicas=1, rng=np.random.default_rng(0))
    values = {}
    for t in sorted(EXPECTED):
        cluster.run_until(t)
        values[t] = cluster.snapshot()["gpu_utilization"]
    return values


def test_stub_and_simulator_report_the_same_dcgm_utilisation():
    stub, simulated = _stub_values(), _simulator_values()
    for t, expected in EXPECTED.items():
        assert stub[t] == pytest.approx(expected, abs=1e-6), ("stub", t)
        assert simulated[t] == pytest.approx(expected, abs=1e-6), ("simulator", t)


def test_stub_exports_vllm_per_request_token_histograms():
    clock = [0.0]
    driver = RealTimeEngine(ReplicaEngine(TenMs(), ENGINE), clock=lambda: clock[0])
    registry = CollectorRegistry()
    registry.register(EngineCollector(driver.engine, "m", 0.0, 0.0, driver.now, driver.activity,
                                      request_tokens=(driver.prompt_tokens, driver.generation_tokens)))
    for prompt, output in ((7, 3), (150, 40), (3000, 12)):
        driver.submit(prompt, output)
    clock[0] = 10.0
    driver.step()
    samples = {(s.name, s.labels.get("le")): s.value for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    prompt, generation = sig.REQUEST_PROMPT_TOKENS_HIST, sig.REQUEST_GENERATION_TOKENS_HIST
    assert samples[(f"{prompt}_sum", None)] == 3157 and samples[(f"{prompt}_count", None)] == 3
    assert samples[(f"{generation}_sum", None)] == 55 and samples[(f"{generation}_count", None)] == 3
    # vLLM's 1-2-5 buckets, cumulative: 7 <= 10, 150 <= 200, 3000 <= 5000
    assert (samples[(f"{prompt}_bucket", "10.0")], samples[(f"{prompt}_bucket", "200.0")], samples[(f"{prompt}_bucket", "5000.0")]) == (1, 2, 3)
