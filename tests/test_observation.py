"""The observation schema kis-obs/2: each feature's physical value and its normalisation, worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.observation import (
    CLIP,
    FEATURE_NAMES,
    FEATURES,
    OBSERVATION_SIZE,
    SCHEMA_VERSION,
    ObservationInputs,
    build_observation,
    raw_features,
    schema_description,
)
from controller.slo import SLO

SNAPSHOT = {
    "request_rate": 12.0, "request_rate_long": 5.9, "prompt_token_rate": 8000.0, "generation_token_rate": 1600.0,
    "requests_running": 48.0, "requests_waiting": 12.0, "kv_cache_usage": 0.4, "gpu_utilization": 75.0,
    "ttft_p95": 0.25, "tpot_p95": 0.1, "queue_time_p95": 0.3, "replicas_ready": 4.0, "replicas_reporting": 4.0,
    "replicas_starting": 2.0, "replicas_desired": 6.0,
}


def inputs(snapshot=SNAPSHOT, **changes) -> ObservationInputs:
    """6 desired replicas, the planner's demand needs 3 replicas now and 4.5 one horizon ahead, one replica serves
    2 req/s at the SLO, the planner proposes 5, the cold start is 150 s."""
    values = dict(snapshot=snapshot, slo=SLO(ttft_s=0.5, tpot_s=0.05), cold_start_s=150.0, current_replicas=6, needed_now=3.0,
                  needed_ahead=4.5, replica_rps=2.0, planner_replicas=5)
    return ObservationInputs(**{**values, **changes})


def test_raw_features_worked_by_hand():
    raw = raw_features(inputs())
    assert raw["load_per_ready"] == 0.75  # 3 replicas of demand on 4 serving pods
    assert raw["load_per_desired"] == 0.5 and raw["forecast_per_desired"] == 0.75  # 3 / 6 and 4.5 / 6
    assert raw["forecast_trend"] == pytest.approx(math.log(4.55 / 3.05))  # log((4.5 + 0.05) / (3 + 0.05))
    assert raw["rate_trend"] == pytest.approx(math.log(12.05 / 5.95))
    assert raw["queue_pressure"] == pytest.approx(3.0)  # 12 waiting / 4 pods, over 2 req/s x 0.5 s
    assert raw["kv_cache_usage"] == 0.4 and raw["gpu_utilization"] == 75.0
    assert raw["ttft_p95_over_slo"] == 0.5 and raw["tpot_p95_over_slo"] == pytest.approx(2.0)
    assert raw["queue_time_p95_over_slo"] == pytest.approx(0.6)  # 0.3 s over the 0.5 s TTFT bound
    assert (raw["ready_share"], raw["starting_share"]) == (pytest.approx(4 / 6), pytest.approx(2 / 6))
    assert raw["replicas_log2"] == pytest.approx(math.log2(7)) and raw["planner_step"] == pytest.approx(-1 / 6)
    assert raw["cold_start"] == 150.0 and raw["prompt_share"] == pytest.approx(8000 / 9600)
    assert raw["metrics_missing_share"] == pytest.approx(1 / 12)  # e2e_p95 is the one of 12 signals missing


def test_normalisation_and_clipping():
    obs = build_observation(inputs())
    assert obs.dtype == np.float32 and obs.shape == (OBSERVATION_SIZE,)
    by_name = dict(zip(FEATURE_NAMES, obs.tolist()))
    assert by_name["gpu_utilization"] == pytest.approx(0.75) and by_name["cold_start"] == pytest.approx(0.5)  # 150 / 300 s
    assert by_name["replicas_log2"] == pytest.approx(math.log2(7) / 4)
    huge = build_observation(inputs(needed_now=1e6, snapshot={**SNAPSHOT, "requests_waiting": 1e6}))
    assert huge[FEATURE_NAMES.index("load_per_ready")] == CLIP and huge[FEATURE_NAMES.index("queue_pressure")] == CLIP


def test_features_carry_across_scale():
    """Ten times the traffic on ten times the fleet, with the same per-replica capacity, reads the same."""
    big = {k: (10 * v if k in ("request_rate", "request_rate_long", "prompt_token_rate", "generation_token_rate", "requests_running",
                               "requests_waiting", "replicas_ready", "replicas_reporting", "replicas_starting", "replicas_desired") else v)
           for k, v in SNAPSHOT.items()}
    small, large = raw_features(inputs()), raw_features(inputs(big, current_replicas=60, needed_now=30.0, needed_ahead=45.0,
                                                                planner_replicas=50))
    same = set(FEATURE_NAMES) - {"replicas_log2"}
    assert {k: pytest.approx(small[k], rel=0.02) for k in same} == {k: large[k] for k in same}  # trends: a 0.05 floor


def test_missing_values_are_zero_in_the_observation_and_counted():
    obs = build_observation(inputs({}, needed_now=0.0, needed_ahead=0.0, planner_replicas=None, cold_start_s=0.0, current_replicas=0))
    assert np.all(np.isfinite(obs))
    assert obs[FEATURE_NAMES.index("metrics_missing_share")] == 1.0
    raw = raw_features(inputs({"request_rate": 3.0}))
    assert math.isnan(raw["rate_trend"]) and math.isnan(raw["prompt_share"]) and math.isnan(raw["kv_cache_usage"])
    # No pod with a sample: per-pod queue pressure is unknown, not a division by zero.
    assert math.isnan(raw_features(inputs({"requests_waiting": 5.0, "replicas_ready": 0.0}))["queue_pressure"])


def test_feature_normalise_offsets():
    feature = next(f for f in FEATURES if f.name == "cold_start")
    assert feature.normalise(math.nan) == 0.0 and feature.normalise(math.inf) == 0.0
    assert feature.normalise(600.0) == pytest.approx(2.0)


def test_schema_description_lists_every_feature_in_order():
    description = schema_description()
    assert description["version"] == SCHEMA_VERSION == "kis-obs/2" and description["clip"] == CLIP
    assert [f["name"] for f in description["features"]] == list(FEATURE_NAMES)
    assert [f["index"] for f in description["features"]] == list(range(OBSERVATION_SIZE))
    first = description["features"][0]
    assert set(first) == {"index", "name", "unit", "offset", "scale", "reads", "help"} and "planner" in first["reads"]


def test_unusable_values_read_as_missing():
    for bad in (None, math.inf, -math.inf, math.nan):
        assert math.isnan(raw_features(inputs({"kv_cache_usage": bad}))["kv_cache_usage"])
