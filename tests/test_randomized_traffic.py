"""Randomised training traffic: what a spec draws, the on/off shape, the rate it is scaled to."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.workloads.randomized import DEFAULT_SHAPES, SHAPES, RandomizedSpec, _on_off, randomized_workload


def _runs(level: np.ndarray) -> list[tuple[bool, int]]:
    """(on, length in minutes) of each run of consecutive minutes on (>= 0.3) or off (< 0.1)."""
    on = level >= 0.3
    assert np.all(on | (level < 0.1)), "every minute is either on or off"
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    return [(bool(chunk[0]), len(chunk)) for chunk in np.split(on, edges)]


def test_on_off_alternates_bursts_of_one_to_five_minutes_with_silences_of_one_to_eight():
    for seed in range(5):
        level = _on_off(np.arange(0.0, 600 * 60.0, 60.0), np.random.default_rng(seed))
        runs = _runs(level)
        assert all(a[0] != b[0] for a, b in zip(runs, runs[1:]))  # merged runs would show as equal neighbours
        inner = runs[1:-1]  # the first and last are cut by the grid
        assert {n for on, n in inner if on} <= set(range(1, 6)) and {n for on, n in inner if not on} <= set(range(1, 9))
        assert level.max() <= 3.0 and level[level >= 0.3].min() >= 0.3
        assert len(inner) > 100


def test_the_default_spec_never_draws_on_off_and_a_spec_draws_only_its_shapes():
    assert "onoff" in SHAPES and "onoff" not in DEFAULT_SHAPES
    drawn = {randomized_workload(RandomizedSpec(duration_s=600), np.random.default_rng(s)).name for s in range(60)}
    assert all("onoff" not in name for name in drawn)
    only = {randomized_workload(RandomizedSpec(duration_s=600, shapes=("onoff",), combine=0.0), np.random.default_rng(s)).name
            for s in range(5)}
    assert only == {"randomized:onoff"}


def test_on_off_traffic_has_near_silent_minutes_between_busy_ones_at_the_drawn_mean_rate():
    spec = RandomizedSpec(duration_s=4 * 3600, rate=(20.0, 20.0), shapes=("onoff",), combine=0.0, burstiness=(0.0, 0.0))
    w = randomized_workload(spec, np.random.default_rng(3))
    per_minute = np.bincount((w.arrival_s // 60).astype(int), minlength=240)
    busy = per_minute[per_minute > 0.3 * 20 * 60 * 0.5]
    assert (per_minute < 0.1 * per_minute.max()).mean() > 0.3  # a good share of near-silent minutes
    assert len(busy) > 40
    # the level is scaled so that its mean over the minutes with any traffic is the drawn rate
    assert len(w) / spec.duration_s == pytest.approx(20.0, rel=0.05)


def test_a_spec_with_an_unknown_shape_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown: \\['bursts'\\]"):
        RandomizedSpec(shapes=("flat", "bursts"))
