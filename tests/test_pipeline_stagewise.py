"""One decision path per stage: per-stage HPA and KPA through ``decide``, joint proposals through the guardrails."""

from __future__ import annotations

from controller.autoscaling import Autoscaler, decide
from controller.guardrails import Behavior
from controller.policies.hpa import HpaPolicy
from controller.policies.kpa import KpaPolicy
from simulator.pipeline.controllers import PipelinePlanner
from simulator.pipeline.sim import PipelineSim
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot
from simulator.pipeline.spec import builtin_pipeline
from simulator.pipeline.stagewise import Guarded, stage_hpa, stage_kpa, stage_signals
from simulator.pipeline.workloads import pipeline_workload


def drive(controller, reference, pipeline="rag", steps=16):
    """Run ``controller`` on a pipeline; at every step, each stage's ``decide`` with ``reference(stage)`` must agree."""
    sim = PipelineSim(builtin_pipeline(pipeline), pipeline_workload("spike", seed=3, duration_s=steps * 15.0))
    state, own = controller.initial_state(), {}
    changed = 0
    for _ in range(steps):
        sim.step(15.0)
        snapshot = sim.snapshot()
        decision, state = controller.decide(snapshot, state)
        for s in snapshot.stages:
            autoscaler = Autoscaler(reference(s), Behavior(s.min_replicas, s.max_replicas), interval_s=15.0)
            record, own[s.name] = decide(autoscaler, stage_signals(snapshot, s.name), snapshot.time_s, s.desired,
                                         own.get(s.name) or autoscaler.initial_state())
            assert decision.replicas[s.name] == record.final, (snapshot.time_s, s.name)
            assert decision.record["stages"][s.name]["final"] == record.final
            changed += record.final != s.desired
        for name, n in decision.replicas.items():
            sim.scale(name, n)
    return changed


def test_a_per_stage_hpa_step_is_decide_on_that_stages_snapshot():
    assert drive(stage_hpa(target=0.7), lambda s: HpaPolicy(metric="gpu_utilization", target=70.0)) > 0


def test_a_per_stage_kpa_step_is_decide_on_that_stages_snapshot():
    kpa = stage_kpa(utilisation=0.7)
    assert drive(kpa, lambda s: KpaPolicy(target=0.7 * s.concurrency_capacity), pipeline="speech") > 0


def stage(name, *, ready=1, rate=5.0, cap=10.0, stable=1.0, panic=1.0, per_replica=8.0, queue=0):
    util = rate / (ready * cap)
    return StageSnapshot(name, "batch", ready, 0, 0, 1, 8, queue, 0.0, 0, rate, rate, cap, util, 0.1, 1.0,
                         0.1, stable, panic, per_replica)


def snap(*stages, time_s=100.0, rate=5.0):
    return PipelineSnapshot(time_s, tuple(stages), rate, 1.0, 0.5, 100, 0, 1.0, 5.0)


def test_the_kpa_sizes_each_stage_on_its_concurrency_and_the_budget_comes_after():
    # a: 20 requests inside, 0.7 x 8 per replica -> 4; b: 2 inside -> 1
    s = snap(stage("a", stable=20.0, panic=20.0), stage("b", stable=2.0, panic=2.0))
    decision, state = stage_kpa().decide(s, {})
    assert decision.replicas == {"a": 4, "b": 1}
    assert decision.record["stages"]["a"]["proposal"] == 4
    budgeted, _ = stage_kpa(budget=3).decide(s, {})
    assert budgeted.replicas == {"a": 2, "b": 1}  # the budget took from the stage asked to grow


def test_joint_proposals_pass_each_stages_guardrails():
    planner = PipelinePlanner(target_utilization=1.0)
    s = snap(stage("a", cap=10.0, rate=60.0), stage("b", cap=60.0, rate=60.0), rate=60.0)
    free, _ = Guarded(planner).decide(s, Guarded(planner).initial_state())
    assert free.replicas == {"a": 6, "b": 1}
    limited = Guarded(planner, behavior={"max_step_up": 2, "scale_down_stabilization_s": 0.0})
    decision, (_, guards) = limited.decide(s, limited.initial_state())
    assert decision.replicas == {"a": 3, "b": 1}
    assert "ScaleUpLimit" in decision.record["guardrails"]["a"] and "b" not in decision.record["guardrails"]
    assert guards["a"].last_scale_direction == 1 and guards["b"].last_scale_direction == 0
