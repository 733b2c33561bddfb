"""Bottleneck detection on constructed snapshots, and the simulator's ground truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from simulator.pipeline.bottleneck import detect_bottleneck, detect_bottleneck_v1, true_bottleneck, what_if_gains
from simulator.pipeline.sim import PipelineSim
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot
from simulator.pipeline.spec import PipelineSpec, StageSpec
from simulator.workloads.workload import Workload


def stage(name, *, ready=1, queue=0, growth=0.0, rate=5.0, cap=10.0, latency=0.1, kind="batch"):
    util = rate / (ready * cap) if ready else (2.0 if rate or queue else 0.0)
    return StageSnapshot(name, kind, ready, 0, 0, 1, 8, queue, growth, 0, rate, min(rate, ready * cap), cap, util, latency, 1.0)


def snap(*stages):
    return PipelineSnapshot(100.0, tuple(stages), 5.0, 1.0, 0.5, 100, 10, 1.0, 5.0)


def test_the_stage_with_a_growing_queue_is_the_bottleneck():
    s = snap(stage("a", rate=8, cap=10), stage("b", rate=8, cap=5, queue=120, growth=3.0, latency=20.0), stage("c", rate=5, cap=6))
    assert detect_bottleneck(s) == "b"


def test_a_saturated_llm_stage_without_a_queue_is_found_by_utilisation_and_latency():
    # Continuous batching takes everything into the batch: no queue, but over capacity and slow.
    s = snap(stage("embed", rate=9, cap=30), stage("llm", kind="llm", rate=9, cap=6, latency=8.0))
    assert detect_bottleneck(s) == "llm"


def test_under_light_load_the_most_utilised_stage_is_named():
    s = snap(stage("a", rate=1, cap=10, latency=0.2), stage("b", rate=1, cap=2, latency=0.5), stage("c", rate=1, cap=20, latency=0.3))
    assert detect_bottleneck(s) == "b"


def test_a_stage_with_no_ready_replica_and_a_queue_is_the_bottleneck():
    s = snap(stage("a", rate=5, cap=10), stage("b", ready=0, queue=40, growth=5.0, latency=math.nan))
    assert detect_bottleneck(s) == "b"


def test_a_long_but_unloaded_stage_is_not_the_bottleneck():
    # The LLM takes most of the latency because decoding is long, but the reranker is the one overloaded.
    s = snap(stage("rerank", rate=9, cap=7, queue=30, growth=2.0, latency=3.0), stage("llm", kind="llm", rate=7, cap=20, latency=4.0))
    assert detect_bottleneck(s) == "rerank"


def constant(rate, duration):
    n = int(rate * duration)
    return Workload(np.arange(n) / rate, np.full(n, 128), np.full(n, 16), duration, "constant")


def chain(cap_a, cap_b):
    return PipelineSpec("two", (StageSpec("a", "batch", gpu="L4", per_item_s=1 / cap_a, max_batch=4),
                                StageSpec("b", "batch", gpu="L4", per_item_s=1 / cap_b, max_batch=4)))


def test_ground_truth_follows_the_bottleneck_as_it_moves():
    sim = PipelineSim(chain(cap_a=6.0, cap_b=4.0), constant(8.0, 400.0))
    sim.run_until(60.0)
    assert true_bottleneck(sim) == "b"
    assert detect_bottleneck(sim.snapshot()) == "b"
    sim.scale("b", 3)  # b can now serve 12/s; a serves 6/s of the 8 arriving
    sim.run_until(200.0)
    assert true_bottleneck(sim) == "a"
    assert detect_bottleneck(sim.snapshot()) == "a"


def test_ground_truth_leaves_the_simulator_unchanged_and_is_none_without_load():
    sim = PipelineSim(chain(cap_a=60.0, cap_b=40.0), constant(0.5, 200.0))
    sim.run_until(50.0)
    before = (sim.now, sim.arrived, sim.completed, [len(s.ready) for s in sim.stages])
    assert true_bottleneck(sim) is None
    gains = what_if_gains(sim)
    assert set(gains) == {"a", "b"}
    assert (sim.now, sim.arrived, sim.completed, [len(s.ready) for s in sim.stages]) == before


def test_an_llm_stage_slowed_by_its_batch_is_named_though_another_stage_is_busier():
    # Continuous batching: at 35% utilisation the LLM's requests take 0.9 s against 0.46 s alone; the
    # reranker is busier but its requests take barely more than its service time. One more LLM replica
    # halves the batch and saves more per request; the previous detector (utilisation first) misses it.
    reranker = replace(stage("reranker", rate=14, cap=20, latency=0.11), service_s=0.085)
    llm = replace(stage("llm", kind="llm", rate=14, cap=40, latency=0.9), service_s=0.46)
    s = snap(stage("embedder", rate=14, cap=64, latency=0.08), reranker, llm)
    assert detect_bottleneck(s) == "llm"
    assert detect_bottleneck_v1(s) == "reranker"


def test_the_more_replicas_a_stage_has_the_less_one_more_saves():
    few = replace(stage("a", ready=1, rate=5, cap=10, latency=1.0), service_s=0.2)
    many = replace(stage("b", ready=4, rate=20, cap=10, latency=1.0), service_s=0.2)
    assert detect_bottleneck(snap(many, few)) == "a"
