"""The pipeline simulator: requests conserved, the slowest stage bounds throughput, cold starts, drain, cost."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.pipeline.sim import PipelineSim
from simulator.pipeline.spec import PipelineSpec, StageSpec, builtin_pipeline
from simulator.workloads.workload import Workload


def constant(rate: float, duration: float, prompt: int = 256, output: int = 32) -> Workload:
    n = int(rate * duration)
    arrivals = np.arange(n) / rate
    return Workload(arrivals, np.full(n, prompt), np.full(n, output), duration, "constant")


def two_batch(cap_a: float, cap_b: float, replicas: int = 1) -> PipelineSpec:
    # Capacity of a full batch of 4: 4 / (4 * per_item) = 1 / per_item.
    return PipelineSpec("two", (
        StageSpec("a", "batch", gpu="L4", per_item_s=1.0 / cap_a, max_batch=4, initial_replicas=replicas, cold_start_s=10.0),
        StageSpec("b", "batch", gpu="L4", per_item_s=1.0 / cap_b, max_batch=4, initial_replicas=replicas, cold_start_s=10.0),
    ))


@pytest.mark.parametrize("name", ["rag", "speech", "disagg"])
def test_requests_are_conserved_through_scaling(name):
    spec = builtin_pipeline(name)
    sim = PipelineSim(spec, constant(20.0, 120.0))
    for t in range(120):
        if t == 20:
            for stage in spec.names:
                sim.scale(stage, 3)
        if t == 50:
            for stage in spec.names:
                sim.scale(stage, 0)  # everything drains, new requests wait
        if t == 60:
            for stage in spec.names:
                sim.scale(stage, 2)
        sim.step()
        assert sim.arrived == sim.completed + sim.in_flight + sim.rejected
    assert sim.rejected == 0
    sim.finish()
    assert sim.completed == sim.arrived == 2400


def test_the_slowest_stage_bounds_throughput():
    sim = PipelineSim(two_batch(cap_a=10.0, cap_b=4.0), constant(20.0, 200.0))
    sim.run_until(200.0)
    throughput = sim.snapshot().stages[-1].throughput
    assert throughput == pytest.approx(4.0, rel=0.05)
    assert sim.snapshot().stages[0].throughput == pytest.approx(10.0, rel=0.05)


def test_adding_replicas_to_the_bottleneck_raises_throughput():
    sim = PipelineSim(two_batch(cap_a=10.0, cap_b=4.0), constant(8.0, 200.0))
    sim.scale("b", 2)
    sim.run_until(200.0)
    assert sim.snapshot().stages[-1].throughput == pytest.approx(8.0, rel=0.05)


def test_a_new_replica_serves_only_after_its_cold_start():
    sim = PipelineSim(two_batch(10.0, 10.0), constant(2.0, 60.0))
    sim.step(5)
    sim.scale("a", 2)
    stage = sim.stage("a")
    sim.step(9)
    assert (len(stage.ready), len(stage.starting)) == (1, 1)
    sim.step(2)
    assert (len(stage.ready), len(stage.starting)) == (2, 0)


def test_scale_down_drains_the_llm_replica_it_removes():
    spec = PipelineSpec("one", (StageSpec("llm", "llm", initial_replicas=2),))
    sim = PipelineSim(spec, constant(10.0, 10.0, prompt=512, output=200), capacity={"llm": 10.0})
    sim.step(10)
    before = sim.in_flight
    assert before > 0
    sim.scale("llm", 0)
    assert len(sim.stage("llm").draining) == 2
    sim.finish()
    assert sim.completed == sim.arrived == 100
    assert not sim.stage("llm").draining


def test_cost_is_billed_per_replica_second_at_the_gpu_price():
    sim = PipelineSim(two_batch(10.0, 10.0, replicas=2), constant(1.0, 100.0))
    sim.run_until(100.0)
    assert sim.gpu_seconds() == pytest.approx(400.0)
    assert sim.cost_usd() == pytest.approx(400.0 * 0.80 / 3600.0)


def test_kv_transfer_adds_to_latency():
    def mean_latency(kv: float) -> float:
        spec = PipelineSpec("d", (StageSpec("p", "prefill"), StageSpec("d", "decode")), kv_transfer_s=kv)
        sim = PipelineSim(spec, constant(2.0, 30.0), capacity={"p": 10.0, "d": 10.0})
        sim.run_until(30.0)
        sim.finish()
        return float(np.mean(sim.latencies))
    assert mean_latency(0.5) - mean_latency(0.0) == pytest.approx(0.5, abs=0.05)


def test_snapshot_reports_queue_growth_and_utilisation_of_an_overloaded_stage():
    sim = PipelineSim(two_batch(cap_a=10.0, cap_b=4.0), constant(8.0, 100.0))
    sim.run_until(60.0)
    snap = sim.snapshot()
    b = snap.stage("b")
    assert b.queue_growth == pytest.approx(4.0, rel=0.1)  # 8 in, 4 out
    assert b.utilisation == pytest.approx(2.0, rel=0.1)
    assert snap.stage("a").utilisation == pytest.approx(0.8, rel=0.1)
