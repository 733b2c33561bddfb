"""Invariants of the continuous-batching replica engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import signals as sig
from simulator.engine.capacity import GIB, kv_capacity_tokens
from simulator.engine.metrics import MetricSink
from simulator.engine.replica import EngineConfig, ReplicaEngine
from tests.toy import AffineLatency, poisson_workload


def replay(engine: ReplicaEngine, workload) -> None:
    for i, t in enumerate(workload.arrival_s):
        engine.advance(float(t))
        engine.submit(i, float(t), int(workload.prompt_tokens[i]), int(workload.output_tokens[i]))


def test_single_request_timeline_is_exact():
    # One 100-token prompt, 5 output tokens, empty engine:
    # prefill iteration = 5 + 0.01*100 = 6 ms -> first token at 1.006 s;
    # then 4 decode steps with batch 1 and context 101..104 (mean 102.5):
    # 4 * (5 + 0.05 + 1e-5*102.5) = 20.2041 ms.
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=10_000))
    engine.advance(1.0)
    assert engine.submit(7, 1.0, 100, 5)
    engine.drain()
    (done,) = engine.finished
    assert done.rid == 7
    assert done.ttft_s == pytest.approx(0.006)
    assert done.e2e_s == pytest.approx(0.006 + 4 * (5.05 + 1e-5 * 102.5) / 1000)
    assert done.tpot_s == pytest.approx((5.05 + 1e-5 * 102.5) / 1000)


def test_no_request_starts_before_it_arrives_and_all_complete():
    workload = poisson_workload(rate=20, duration=60, seed=1)
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=50_000, max_num_seqs=32))
    replay(engine, workload)
    engine.drain()
    assert len(engine.finished) == len(workload)
    for f in engine.finished:
        assert f.admitted_s >= f.arrival_s
        assert f.first_token_s > f.admitted_s
        assert f.finish_s >= f.first_token_s


def test_unfinished_requests_are_still_queued_at_the_end():
    workload = poisson_workload(rate=50, duration=30, seed=2)
    engine = ReplicaEngine(AffineLatency(scale=4.0), EngineConfig(kv_capacity_tokens=30_000, max_num_seqs=16))
    replay(engine, workload)
    engine.advance(float(workload.duration_s))
    assert len(engine.finished) + engine.num_outstanding == len(workload)
    assert engine.num_waiting > 0  # overloaded: a queue remains


def test_running_batch_never_exceeds_kv_capacity_or_max_seqs():
    workload = poisson_workload(rate=40, duration=40, seed=3, prompt=(500, 3000))
    config = EngineConfig(kv_capacity_tokens=20_000, max_num_seqs=8)
    engine = ReplicaEngine(AffineLatency(), config)
    for i, t in enumerate(workload.arrival_s):
        engine.advance(float(t))
        assert engine.kv_cached_tokens <= config.kv_capacity_tokens
        assert engine._reserved <= config.kv_capacity_tokens
        assert engine.num_running <= config.max_num_seqs
        engine.submit(i, float(t), int(workload.prompt_tokens[i]), int(workload.output_tokens[i]))


def test_oversized_request_and_full_queue_are_refused():
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=1000, max_waiting=1))
    assert not engine.submit(0, 0.0, 900, 200)  # can never fit
    assert engine.submit(1, 0.0, 500, 400)
    engine.advance(0.001)  # request 1 is admitted and reserves 900 of the 1000 tokens
    assert engine.submit(2, 0.001, 500, 400)  # waits: it does not fit next to request 1
    assert not engine.submit(3, 0.001, 10, 10)  # the waiting queue (1) is full
    engine.drain()
    assert sorted(f.rid for f in engine.finished) == [1, 2]


def _p95_ttft(rate: float) -> float:
    workload = poisson_workload(rate=rate, duration=120, seed=4)
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=100_000, max_num_seqs=64))
    replay(engine, workload)
    engine.drain()
    return float(np.percentile([f.ttft_s for f in engine.finished], 95)), float(np.mean([f.tpot_s for f in engine.finished]))


def test_latency_does_not_fall_when_load_rises():
    results = [_p95_ttft(rate) for rate in (2, 8, 20, 40)]
    ttfts = [r[0] for r in results]
    tpots = [r[1] for r in results]
    assert ttfts == sorted(ttfts)
    assert tpots == sorted(tpots)
    assert ttfts[-1] > 2 * ttfts[0]


@settings(max_examples=30, deadline=None)
@given(
    prompts=st.lists(st.integers(1, 3000), min_size=1, max_size=30),
    outputs=st.lists(st.integers(1, 300), min_size=30, max_size=30),
    gaps=st.lists(st.floats(0, 0.5), min_size=30, max_size=30),
)
def test_metrics_count_every_token_once(prompts, outputs, gaps):
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=40_000, max_num_seqs=8, max_batched_tokens=512))
    t = 0.0
    for i, prompt in enumerate(prompts):
        t += gaps[i]
        engine.advance(t)
        assert engine.submit(i, t, prompt, outputs[i])
    engine.drain()
    sink = engine.sink
    assert sink.prompt_tokens == sum(prompts)
    assert sink.generation_tokens == sum(outputs[: len(prompts)])
    assert sink.request_success == len(prompts)
    assert sink.histograms[sig.TTFT_HIST].count == len(prompts)
    assert sink.busy_seconds == pytest.approx(engine.busy_s)


def test_finished_requests_reach_the_histograms_as_one_observation_each():
    """The sink observes handed-over requests when read, in order: the same floats as observing each at once."""
    engine = ReplicaEngine(AffineLatency(), EngineConfig(kv_capacity_tokens=40_000, max_num_seqs=8, max_batched_tokens=512))
    replay(engine, poisson_workload(rate=20.0, duration=30.0, seed=4))
    engine.drain()
    one_by_one = MetricSink()
    for f in engine.finished:
        one_by_one.observe_request(f.ttft_s, f.tpot_s, f.e2e_s, f.queue_s, f.output_tokens)
    assert one_by_one.request_success == engine.sink.request_success == len(engine.finished)
    for name, h in one_by_one.histograms.items():
        got = engine.sink.histograms[name]
        assert (got.counts, got.total, got.count) == (h.counts, h.total, h.count), name


def test_chunked_prefill_splits_long_prompts():
    # A 1000-token prompt with a 256-token budget needs 4 prefill iterations.
    engine = ReplicaEngine(AffineLatency(per_prefill_token=0.0), EngineConfig(kv_capacity_tokens=10_000, max_num_seqs=4, max_batched_tokens=256))
    engine.submit(0, 0.0, 1000, 2)
    engine.drain()
    (done,) = engine.finished
    assert done.ttft_s == pytest.approx(4 * 5.0 / 1000)


def test_kv_capacity_from_memory():
    # 80 GiB x 0.9 = 72 GiB; minus 16 GiB weights and 2 GiB reserve = 54 GiB of KV at 128 KiB/token.
    tokens = kv_capacity_tokens(80 * GIB, 16 * GIB, 128 * 1024)
    assert tokens == 54 * GIB // (128 * 1024)
    with pytest.raises(ValueError, match="does not fit"):
        kv_capacity_tokens(24 * GIB, 140 * GIB, 1024)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_batched_tokens"):
        EngineConfig(kv_capacity_tokens=100, max_num_seqs=512, max_batched_tokens=256)
