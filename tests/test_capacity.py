"""Per-replica capacity at the SLO: the profile's arithmetic, and its measurement on the replica engine."""

from __future__ import annotations

import json
import math

import pytest

from controller.capacity import CapacityProfile
from controller.slo import SLO
from simulator.engine.isolated import feasible, isolated_ttft_s
from simulator.engine.replica import EngineConfig
from simulator.planning.capacity import attainment_at, capacity_profile, max_rate, pool_capacity
from tests.test_env_autoscale import toy_pools
from tests.toy import AffineLatency

PROFILE = CapacityProfile((1000.0, 4000.0), (200.0, 800.0), ((4.0, 3.0), (2.0, 1.5)), "worked numbers")


def test_grid_points_are_exact_and_between_them_log_rates_interpolate_in_log_tokens():
    assert PROFILE.rps(1000, 200) == pytest.approx(4.0) and PROFILE.rps(4000, 800) == pytest.approx(1.5)
    # 2,000 tokens is half-way from 1,000 to 4,000 in log space: the geometric mean of 4 and 2
    assert PROFILE.rps(2000, 200) == pytest.approx(math.sqrt(4.0 * 2.0))
    # both halfway: the geometric mean of the four corners
    assert PROFILE.rps(2000, 400) == pytest.approx((4.0 * 3.0 * 2.0 * 1.5) ** 0.25)


def test_outside_the_grid_the_edge_holds():
    assert PROFILE.rps(10, 1) == pytest.approx(4.0)
    assert PROFILE.rps(1e6, 1e6) == pytest.approx(1.5)
    assert PROFILE.rps(math.nan, 200) == pytest.approx(4.0)


def test_a_fleet_serves_more_per_replica_than_one_replica_alone():
    """Alone 4 req/s; 4 replicas behind the router 6.4 req/s each: a gain of 1.6 at 4, as a power law in n:
    n = 2: 4 x 1.6^0.5 = 5.06; n = 16: 4 x 1.6^2 = 10.24; larger fleets keep the gain of 16."""
    pooled = CapacityProfile((1000.0,), (200.0,), ((4.0,),), pooled_rps=((6.4,),), pool_size=4)
    assert pooled.rps(1000, 200) == pytest.approx(4.0) and pooled.rps(1000, 200, 4) == pytest.approx(6.4)
    assert pooled.rps(1000, 200, 2) == pytest.approx(4 * 1.6 ** 0.5)
    assert pooled.rps(1000, 200, 16) == pytest.approx(10.24) and pooled.rps(1000, 200, 64) == pytest.approx(10.24)
    # 20 req/s: 3 replicas hold 3 x 4 x 1.6^(log 3 / log 4) = 17.4, 4 hold 25.6
    assert pooled.fleet(20.0, 1000, 200) == 4 and PROFILE.fleet(20.0, 1000, 200) == 5  # alone: ceil(20 / 4)
    assert pooled.fleet(20.0, 1000, 200, utilization=0.5) == 6 and pooled.fleet(0.0, 1000, 200) == 0
    assert pooled.fleet(1e6, 1000, 200, limit=16) == 16


def test_round_trip_through_the_spec_mapping():
    data = PROFILE.to_dict()
    assert data["promptTokens"] == [1000.0, 4000.0] and data["maxRps"] == [[4.0, 3.0], [2.0, 1.5]]
    assert CapacityProfile.from_dict(data) == PROFILE
    full = CapacityProfile((1.0,), (2.0,), ((3.0,),), "s", ((4.0,),), ((5.0,),), 8)
    assert CapacityProfile.from_dict(full.to_dict()) == full and full.to_dict()["poolSize"] == 8
    assert CapacityProfile.from_dict({"prompt_tokens": [1], "output_tokens": [1], "max_rps": [[2]]}).rps(5, 5) == 2.0


@pytest.mark.parametrize(("data", "message"), [
    ({"outputTokens": [1], "maxRps": [[1]]}, r"spec\.capacity\.promptTokens: missing"),
    ({"promptTokens": [2, 1], "outputTokens": [1], "maxRps": [[1], [1]]}, r"spec\.capacity\.prompt_tokens: must be a non-empty increasing"),
    ({"promptTokens": [1, 2], "outputTokens": [1], "maxRps": [[1]]}, r"spec\.capacity\.maxRps: must be 2 rows of 1"),
    ({"promptTokens": [1], "outputTokens": [1], "maxRps": [[0]]}, r"spec\.capacity\.maxRps: every entry must be a positive"),
    ({"promptTokens": "many", "outputTokens": [1], "maxRps": [[1]]}, r"spec\.capacity: grid, maxRps, maxConcurrency and pooledRps must be lists of numbers"),
    ([1, 2], r"spec\.capacity: must be a mapping"),
])
def test_bad_profiles_are_refused_naming_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        CapacityProfile.from_dict(data, "spec.capacity")


# ------------------------------------------------------------ measurement
MODEL = AffineLatency(base=5.0, per_prefill_token=0.01, per_seq=0.05, per_context_token=1e-5)
ENGINE = EngineConfig(kv_capacity_tokens=200_000, max_num_seqs=64, max_batched_tokens=2048)


def test_a_lone_prompt_is_prefilled_in_chunks_of_the_token_budget():
    # 5,000 tokens = chunks of 2,048, 2,048 and 904 tokens: 3 iterations of 5 ms + 0.01 ms per token
    assert isolated_ttft_s(MODEL, ENGINE, 5000) == pytest.approx((3 * 5.0 + 0.01 * 5000) / 1000)
    ok = feasible(MODEL, ENGINE, SLO(ttft_s=0.07), [1000, 5000, 5000], [10, 10, 300_000])
    assert ok.tolist() == [True, True, False]  # the last one never fits the KV cache
    assert feasible(MODEL, ENGINE, SLO(ttft_s=0.05), [5000], [10]).tolist() == [False]  # 65 ms > 50 ms alone


def test_attainment_falls_as_the_rate_rises():
    light = attainment_at(MODEL, ENGINE, SLO(), 1.0, 500, 100)
    heavy = attainment_at(MODEL, ENGINE, SLO(), 200.0, 500, 100)
    assert light > 0.99 > heavy


def test_the_capacity_is_the_knee_of_attainment():
    best, trials = max_rate(MODEL, ENGINE, SLO(), 500, 100)
    rate = best.rate
    assert best.concurrency > 0 and best.attainment >= trials[0].attainment - 0.01
    assert attainment_at(MODEL, ENGINE, SLO(), rate, 500, 100) >= trials[0].attainment - 0.01
    assert attainment_at(MODEL, ENGINE, SLO(), 1.5 * rate, 500, 100) < trials[0].attainment - 0.01


def test_longer_prompts_and_outputs_lower_the_capacity():
    profile = capacity_profile(MODEL, ENGINE, SLO(), prompt_grid=(200, 2000), output_grid=(20, 400), requests=800, iterations=8)
    (short_short, short_long), (long_short, long_long) = profile.max_rps
    assert long_short < short_short and short_long < short_short and long_long < long_short
    assert "SLO TTFT 500 ms, TPOT 50 ms" in profile.source


def test_profiles_are_cached_per_model_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("KIS_CACHE_DIR", str(tmp_path))
    import simulator.planning.capacity as capacity

    monkeypatch.setattr(capacity, "_memory", {})
    monkeypatch.setattr(capacity, "SHIPPED_DIR", tmp_path / "shipped")
    calls = []
    real = capacity.capacity_profile
    monkeypatch.setattr(capacity, "capacity_profile", lambda *a, **k: calls.append(1) or real(*a, **{**k, "requests": 300, "iterations": 4}))
    pool = toy_pools()[0]
    first = pool_capacity(pool)
    assert calls == [1] and list((tmp_path / "capacity").glob("*.json"))
    monkeypatch.setattr(capacity, "_memory", {})  # a new process: read back from disk
    assert pool_capacity(pool) == first and calls == [1]
    assert pool_capacity(toy_pools(scale=2.0)[0]) != first and calls == [1, 1]  # another latency model


def test_shipped_profiles_are_read_before_measuring_and_a_corrupt_one_is_measured(tmp_path, monkeypatch):
    """A fresh machine reads the profile shipped in the package under the same key; it measures only
    when none is shipped or the shipped file is unreadable."""
    import simulator.planning.capacity as capacity

    monkeypatch.setenv("KIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(capacity, "_memory", {})
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(capacity, "SHIPPED_DIR", shipped)
    pool = toy_pools()[0]
    key = capacity._fingerprint(pool.model, pool.engine, SLO(), 0.99, "least_connections")
    known = CapacityProfile((100.0, 1000.0), (10.0, 100.0), ((9.0, 8.0), (7.0, 6.0)), "shipped")
    (shipped / f"{key}.json").write_text(json.dumps(known.to_dict()))
    calls = []
    monkeypatch.setattr(capacity, "capacity_profile", lambda *a, **k: calls.append(1) or known)
    assert pool_capacity(pool) == known and calls == []
    monkeypatch.setattr(capacity, "_memory", {})
    (shipped / f"{key}.json").write_text("{not json")
    assert pool_capacity(pool) == known and calls == [1]
