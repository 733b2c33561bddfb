"""Copies of the engine's objects (``copy.deepcopy``: a pipeline's fork; ``pickle``: the executors) carry their whole state.

These classes are compiled (simulator/compiled.py), where copying goes through their ``__reduce__``; each build runs
this file (tests/test_compiled.py runs it in the other one).
"""

from __future__ import annotations

import copy
import pickle

import pytest

from controller import signals as sig
from simulator.engine.metrics import Histogram, MetricSink
from simulator.engine.replica import EngineConfig, ReplicaEngine
from simulator.profiles import default_latency_model as load_latency_model
from simulator.profiles.roofline import CalibrationParams
from tests.toy import poisson_workload

COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda x: pickle.loads(pickle.dumps(x))}


def busy_engine() -> tuple[ReplicaEngine, list[tuple[int, float, int, int]]]:
    """An engine mid-run (requests waiting, prefilling and decoding), and the arrivals still to come."""
    workload = poisson_workload(rate=40, duration=60, seed=3)
    arrivals = [(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(workload.arrival_s, workload.prompt_tokens, workload.output_tokens))]
    engine = ReplicaEngine(load_latency_model("H100", "llama-8b"), EngineConfig(kv_capacity_tokens=60_000, max_num_seqs=32))
    half = len(arrivals) // 2
    for rid, t, p, o in arrivals[:half]:
        engine.advance(t)
        engine.submit(rid, t, p, o)
    assert engine.num_waiting > 0 or engine.num_running > 0
    return engine, arrivals[half:]


def finish(engine: ReplicaEngine, arrivals: list[tuple[int, float, int, int]]) -> tuple:
    for rid, t, p, o in arrivals:
        engine.advance(t)
        engine.submit(rid, t, p, o)
    engine.drain()
    sink = engine.sink
    return (tuple(engine.finished), engine.clock, engine.busy_s, sink.counters(),
            {name: (h.snapshot(), h.total, h.count) for name, h in sink.histograms.items()})


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copied_engine_goes_on_exactly_as_the_original(how):
    engine, rest = busy_engine()
    twin = COPIES[how](engine)
    assert twin.sink is not engine.sink and twin.model is not engine.model
    assert finish(twin, rest) == finish(engine, rest)


def test_a_copy_leaves_the_original_and_its_sink_alone():
    engine, rest = busy_engine()
    before = (len(engine.finished), engine.clock, engine.sink.request_success, engine.sink.counters())
    fork = copy.deepcopy(engine)
    finish(fork, rest)
    assert (len(engine.finished), engine.clock, engine.sink.request_success, engine.sink.counters()) == before


def test_engines_sharing_a_sink_still_share_it_in_the_copy():
    sink = MetricSink()
    model = load_latency_model("H100", "llama-8b")
    engines = [ReplicaEngine(model, EngineConfig(kv_capacity_tokens=60_000), sink=sink) for _ in range(2)]
    a, b = copy.deepcopy(engines)
    assert a.sink is b.sink and a.sink is not sink and a.model is b.model


@pytest.mark.parametrize("how", list(COPIES))
def test_the_value_objects_copy_with_every_field(how):
    config = EngineConfig(kv_capacity_tokens=1234, max_num_seqs=7, max_batched_tokens=99, max_waiting=5)
    params = CalibrationParams(compute_eff=0.55, memory_eff=0.66, kernel_us=3.5, engine="paged", source="test", fit={"err": 0.1})
    histogram = Histogram(sig.HISTOGRAM_BUCKETS[sig.TTFT_HIST])
    histogram.observe(0.2, 3.0)
    assert COPIES[how](config) == config
    assert COPIES[how](params) == params
    copied = COPIES[how](histogram)
    assert (copied.snapshot(), copied.total, copied.count) == (histogram.snapshot(), histogram.total, histogram.count)
    copied.observe(0.2)
    assert copied.count == histogram.count + 1  # its own buckets


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copied_latency_model_times_iterations_the_same(how):
    model = load_latency_model("H100", "llama-8b")
    twin = COPIES[how](model)
    probes = [(0, 0.0, 8, 8 * 900.0, 0), (512, 512 * 513 / 2.0, 4, 4 * 300.0, 1), (2048, 2048 * 2049 / 2.0, 0, 0.0, 1)]
    assert [twin.iteration_ms(*p) for p in probes] == [model.iteration_ms(*p) for p in probes]
    assert twin.decode_time(8)(7200.0) == model.decode_time(8)(7200.0)


def busy_cluster():
    """A cluster mid-run: replicas serving and starting, requests in flight, a scale-up under way."""
    import numpy as np

    from simulator.cluster.build import build_cluster
    from simulator.cluster.config import ClusterConfig, NodePool

    config = ClusterConfig(pools=(NodePool(name="h100", gpu="H100", gpus_per_node=4, initial_nodes=1, max_nodes=2),), model="llama-8b")
    cluster = build_cluster(config, poisson_workload(rate=30, duration=240, seed=5), initial_replicas=2, rng=np.random.default_rng(1))
    cluster.run_until(60.0)
    cluster.scale(5)
    cluster.run_until(90.0)
    assert cluster.ready_replicas >= 1 and cluster.starting_replicas >= 1
    return cluster


def run_out(cluster) -> tuple:
    cluster.scale(3)
    cluster.run_until(240.0)
    cluster.finish()
    return (tuple(cluster.finished), cluster.cost_usd(), cluster.gpu_seconds(), cluster.scale_events, signals(cluster),
            tuple(cluster.timeline.ready))


def signals(cluster) -> dict:
    """The cluster's snapshot with NaN made comparable."""
    return {name: None if value != value else value for name, value in cluster.snapshot().items()}


@pytest.mark.parametrize("how", list(COPIES))
def test_a_copied_cluster_goes_on_exactly_as_the_original(how):
    """A rollout branches a running cluster: the copy (pods, nodes, router, metrics, random state) replays the rest alike."""
    cluster = busy_cluster()
    twin = COPIES[how](cluster)
    assert twin.nodes[0] is not cluster.nodes[0] and twin.rng is not cluster.rng
    assert run_out(twin) == run_out(cluster)


def test_running_a_copied_cluster_leaves_the_original_alone():
    cluster = busy_cluster()
    before = (len(cluster.finished), cluster.now, cluster.cost_usd(), cluster.ready_replicas, signals(cluster))
    run_out(copy.deepcopy(cluster))
    assert (len(cluster.finished), cluster.now, cluster.cost_usd(), cluster.ready_replicas, signals(cluster)) == before
