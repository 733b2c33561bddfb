"""Evaluation: determinism, reaction time, sweeps, the oracle against policies, the report."""

from __future__ import annotations

import math

import numpy as np

from controller.slo import SLO
from simulator.evaluation.report import write_report
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, WorkloadEntry, aggregate, burst_start_s, evaluate, reaction_time_s
from simulator.evaluation.sweep import Knob, sweep
from simulator.workloads import make_workload

SETUP = EvaluationSetup(max_replicas=6, initial_replicas=1, slo=SLO())
SPIKE = WorkloadEntry("spike", lambda seed: make_workload("spike", seed=seed, duration_s=900, base_rate=4, peak_rate=30))
HPA = PolicyEntry("hpa", {"type": "hpa", "target": 6})


def test_evaluation_is_deterministic():
    a = evaluate([HPA], [SPIKE], [0, 1], SETUP, include_oracle=False, keep_results=False)
    b = evaluate([HPA], [SPIKE], [0, 1], SETUP, include_oracle=False, keep_results=False)
    assert [r.summary for r in a] == [r.summary for r in b]
    assert a[0].summary != a[1].summary  # seeds differ


def test_burst_detection_and_reaction_time():
    workload = SPIKE.make(0)
    assert burst_start_s(workload) == 300.0  # the spike starts at duration / 3
    records = evaluate([HPA, PolicyEntry("fixed", {"type": "fixed", "replicas": 1})], [SPIKE], [0], SETUP, include_oracle=False)
    by_policy = {r.policy: r for r in records}
    assert 0 < by_policy["hpa"].summary["reaction_time_s"] < 300  # scaled up within minutes, cold start included
    assert math.isnan(by_policy["fixed"].summary["reaction_time_s"])  # never reacts
    assert reaction_time_s(workload, by_policy["hpa"].result) == by_policy["hpa"].summary["reaction_time_s"]


def test_oracle_costs_no_more_than_policies_reaching_its_attainment():
    policies = [PolicyEntry(f"hpa{t}", {"type": "hpa", "target": t}) for t in (2, 4, 8)]
    policies += [PolicyEntry(f"fixed{n}", {"type": "fixed", "replicas": n}) for n in (2, 4, 6)]
    setup = EvaluationSetup(max_replicas=6, initial_replicas=1, oracle_target=0.95)
    summaries = {r.policy: r.summary for r in evaluate(policies, [SPIKE], [3], setup)}
    oracle = summaries.pop("oracle")
    assert oracle["slo_attainment"] >= 0.95
    for name, summary in summaries.items():
        if summary["slo_attainment"] >= oracle["slo_attainment"]:
            assert oracle["cost_usd"] <= summary["cost_usd"] + 1e-9, name


def test_sweep_draws_a_front(tmp_path):
    knobs = {"hpa": Knob("target", (2, 16), lambda spec, v: {**spec, "target": v})}
    points = sweep([HPA], [SPIKE], [0], SETUP, oracle_targets=(0.9,), knobs=knobs)
    hpa = sorted((p for p in points if p.policy == "hpa"), key=lambda p: p.knob_value)
    assert [p.knob_value for p in hpa] == [2, 16]
    assert hpa[0].cost_usd > hpa[1].cost_usd and hpa[0].slo_attainment >= hpa[1].slo_attainment  # a lower target buys attainment
    records = evaluate([HPA], [SPIKE], [0], SETUP)
    report = write_report(records, tmp_path, sweep=points)
    text = report.read_text()
    assert "## spike" in text and "fronts.png" in text and (tmp_path / "fronts.png").exists()
    assert set(aggregate(records)) == {("hpa", "spike"), ("oracle", "spike")}
    assert np.isfinite(aggregate(records)[("hpa", "spike")]["gpu_hours"])
