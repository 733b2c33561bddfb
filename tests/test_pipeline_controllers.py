"""Pipeline controllers: per-stage HPA, the pipeline planner, budgets, and the in-context controller learning online."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.pipeline.controllers import PipelinePlanner, bound, chain_throughput
from simulator.pipeline.episode import run_episode
from simulator.pipeline.incontext import Experience, Gaussian, InContextController, Outcome, candidate_actions, pareto_reward, retrieve
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot
from simulator.pipeline.spec import PipelineSpec, StageSpec
from simulator.pipeline.stagewise import stage_hpa
from simulator.workloads.workload import Workload


def stage(name, *, ready=1, starting=0, queue=0, rate=5.0, cap=10.0, max_replicas=8):
    util = rate / (ready * cap) if ready else 0.0
    return StageSnapshot(name, "batch", ready, starting, 0, 1, max_replicas, queue, 0.0, 0, rate, rate, cap, util, 0.1, 1.0)


def snap(*stages, time_s=100.0, rate=5.0):
    return PipelineSnapshot(time_s, tuple(stages), rate, 1.0, 0.5, 100, 0, 1.0, 5.0)


def test_planner_sizes_every_stage_to_the_demand_over_its_capacity():
    s = snap(stage("a", cap=10.0, rate=20.0), stage("b", cap=4.0, rate=20.0), stage("c", cap=25.0, rate=20.0), rate=20.0)
    decision, _ = PipelinePlanner(target_utilization=1.0).decide(s, PipelinePlanner().initial_state())
    assert decision.replicas == {"a": 2, "b": 5, "c": 1}


def test_planner_waits_before_scaling_down():
    planner = PipelinePlanner(target_utilization=1.0, scale_down_delay_s=60.0)
    state = planner.initial_state()
    big = [stage("a", ready=4, cap=10.0, rate=5.0)]
    for t in (0.0, 30.0):
        decision, state = planner.decide(snap(*big, time_s=t, rate=5.0), state)
        assert decision.replicas == {"a": 4}
    decision, state = planner.decide(snap(*big, time_s=60.0, rate=5.0), state)
    assert decision.replicas == {"a": 1}


def test_chain_throughput_is_the_slowest_stage():
    assert chain_throughput(snap(stage("a", ready=2, cap=10.0), stage("b", ready=3, cap=4.0))) == (12.0, "b")


def test_hpa_scales_each_stage_on_its_own_utilisation():
    s = snap(stage("a", rate=5.0, cap=10.0), stage("b", rate=5.0, cap=2.0))  # b at 250 %
    decision, state = stage_hpa(target=0.7).decide(s, {})
    assert decision.replicas["b"] == 4  # ceil(2.5 / 0.7); the HPA doubles at most (max(2 x 1, 4))
    assert decision.replicas["a"] == 1
    assert set(state) == {"a", "b"}


def test_budget_takes_replicas_from_the_least_loaded_stage():
    s = snap(stage("a", rate=5.0, cap=10.0), stage("b", rate=5.0, cap=1.0))
    assert bound({"a": 4, "b": 6}, s, budget=7) == {"a": 1, "b": 6}
    assert bound({"a": 20, "b": 0}, s) == {"a": 8, "b": 1}


def test_pareto_reward_prefers_dominating_outcomes_and_a_shrinking_excess():
    before = Outcome(2.0, 10.0)
    assert pareto_reward(Outcome(1.5, 9.0), before) > 1.0  # dominates and the excess shrank
    assert pareto_reward(Outcome(2.5, 11.0), before) < -1.0
    assert pareto_reward(Outcome(0.5, 9.0), Outcome(0.6, 10.0)) == pytest.approx(1.0 + math.log(10 / 9))  # within the SLO: dominance and the saving
    assert pareto_reward(Outcome(0.5, 12.0), Outcome(0.6, 10.0)) < 0  # within the SLO, a costlier fleet does not pay
    assert pareto_reward(Outcome(1.0, 12.0), before) > 0  # costlier but back within the SLO


def test_surprisal_is_high_for_an_unexpected_outcome():
    g = Gaussian()
    for x in (0.1, 0.12, 0.09, 0.11):
        g = g.update(x)
    assert g.surprisal(2.0) > g.surprisal(0.1) + 10


def test_retrieval_is_bounded_and_keeps_the_surprising_and_the_near():
    def exp(state, surprisal):
        return Experience(0.0, (state,), (0,), Outcome(1.0, 1.0), 0.0, surprisal)
    store = [exp(float(i), 0.0) for i in range(50)] + [exp(100.0, 9.0)]
    got = retrieve(store, (10.0,), context_size=5, k_surprising=1)
    assert len(got) == 5
    assert got[0].state == (100.0,)
    assert sorted(e.state[0] for e in got[1:]) == [8.0, 9.0, 10.0, 11.0]


def constant(rate, duration):
    n = int(rate * duration)
    return Workload(np.arange(n) / rate, np.full(n, 128), np.full(n, 16), duration, "constant")


@pytest.mark.parametrize("rate", [9.0, 10.0])
def test_in_context_controller_improves_within_an_episode_over_a_misinformed_planner(rate):
    # The planner believes stage b serves 12/s per replica; it serves 4/s. Following it leaves b short for
    # the whole episode. The in-context controller starts from the same planner and must learn to add b.
    spec = PipelineSpec("two", (StageSpec("a", "batch", gpu="L4", per_item_s=1 / 20, max_batch=4, cold_start_s=15),
                                StageSpec("b", "batch", gpu="L4", per_item_s=1 / 4, max_batch=4, cold_start_s=15)), slo_p99_s=5.0)
    wrong = PipelinePlanner(capacity={"b": 12.0}, cold_start_s=15.0)
    workload = constant(rate, 900.0)
    learner = run_episode(spec, workload, InContextController(planner=wrong))
    alone = run_episode(spec, workload, wrong)
    third = len(learner.timeline["p99_s"]) // 3
    late_learner = np.nanmean(learner.timeline["p99_s"][-third:])
    assert late_learner < 0.5 * np.nanmean(alone.timeline["p99_s"][-third:])
    p99 = learner.timeline["p99_s"]
    assert np.nanmean(p99[-5:]) < 0.25 * np.nanmax(p99[: len(p99) // 2])  # it got worse first, then it learnt
    assert min(learner.timeline["replicas_b"][-5:]) >= 3
    assert learner.metrics["p99_s"] < alone.metrics["p99_s"]
    assert any(d["selector"] == "builtin" and d["fallback"] is None for d in learner.decisions)


def test_candidates_are_a_hold_one_more_on_the_bottleneck_and_one_fewer_on_the_least_needed():
    s = snap(stage("a", ready=3, rate=5.0, cap=10.0), stage("b", ready=1, rate=9.0, cap=10.0, queue=30), stage("c", ready=1, rate=5.0))
    assert candidate_actions(s, {"a": 3, "b": 1, "c": 1}) == [(0, 0, 0), (0, 1, 0), (-1, 0, 0)]
    # at its maximum the bottleneck gets no +1 (the next-scored stage does); at their minimum no stage gets a -1
    assert candidate_actions(s, {"a": 1, "b": 8, "c": 1}) == [(0, 0, 0), (0, 0, 1), (0, -1, 0)]
    assert candidate_actions(s, {"a": 1, "b": 1, "c": 1}) == [(0, 0, 0), (0, 1, 0)]


def test_without_experience_the_in_context_controller_is_the_planner():
    s = snap(stage("a", cap=10.0, rate=20.0), stage("b", cap=4.0, rate=20.0), rate=20.0)
    planner = PipelinePlanner()
    planned, _ = planner.decide(s, planner.initial_state())
    controller = InContextController(planner=planner)
    decision, state = controller.decide(s, controller.initial_state())
    assert decision.replicas == planned.replicas and decision.record["action"] == [0, 0]
    assert dict(state.residual) == {"a": 0, "b": 0}
