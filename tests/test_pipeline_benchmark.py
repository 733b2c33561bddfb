"""bench/pipeline_benchmark.py: verdicts with ties, pooled detector accuracy, the SAIR comparison's counts."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("pipeline_benchmark", Path(__file__).resolve().parents[1] / "bench" / "pipeline_benchmark.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def row(controller, p99, cost, pipeline="rag", pattern="ramp", seeds=()):
    return {"pipeline": pipeline, "pattern": pattern, "controller": controller, "p99_s": p99, "cost_usd": cost, "seeds": list(seeds)}


def test_winners_are_the_best_and_those_within_five_percent():
    cell = [row("hpa", 10.0, 1.0), row("kpa", 10.4, 2.0), row("planner", 11.0, 1.04), row("ppo", math.nan, 0.5)]
    assert bench.winners(cell, "p99_s") == ["hpa", "kpa"]
    assert bench.winners(cell, "cost_usd") == ["ppo"]


def test_pooled_accuracy_weights_each_episode_by_its_scored_snapshots():
    seeds = [{"bottleneck_accuracy": 1.0, "bottleneck_scored": 3.0}, {"bottleneck_accuracy": 0.0, "bottleneck_scored": 1.0},
             {"bottleneck_accuracy": math.nan, "bottleneck_scored": 0.0}]
    assert bench.pooled_accuracy([row("hpa", 1, 1, seeds=seeds)], "bottleneck_accuracy") == (0.75, 4)


def test_the_sair_comparison_counts_cells_against_the_deployed_baselines_only():
    rows = [row("hpa", 10.0, 1.0), row("kpa", 8.0, 2.0), row("planner", 1.0, 0.1), row("incontext", 4.0, 1.0),
            row("hpa", 5.0, 1.0, pattern="spike"), row("kpa", 5.0, 1.0, pattern="spike"), row("incontext", 6.0, 0.9, pattern="spike")]
    got = bench.sair_comparison(rows, "incontext")
    assert (got["cells"], got["p99_best_or_tied"], got["cost_best_or_tied"], got["both"]) == (2, 1, 2, 1)
    assert got["max_p99_reduction"] == pytest.approx(0.5)  # 4 s against kpa's 8 s; the planner is not a deployed baseline
