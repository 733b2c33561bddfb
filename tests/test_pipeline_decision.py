"""controller.pipeline: each stage through ``decide``, then the shared GPU budget; the one copy the simulator uses too."""

from __future__ import annotations

from controller.autoscaling import Autoscaler, decide
from controller.guardrails import Behavior
from controller.pipeline import BUDGET_GUARD, PipelineStage, StageLimits, decide_pipeline, within_budget
from controller.policies.fixed import FixedPolicy
from controller.policies.registry import build_policy
from simulator.pipeline.controllers import bound
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot

NOW = 1_000.0


def snapshot(running: float, ready: int) -> dict[str, float]:
    return {"requests_running": running, "requests_waiting": 0.0, "replicas_ready": float(ready), "replicas_reporting": float(ready)}


def hpa_stage(name: str, max_replicas: int = 10, gpus: int = 1, min_replicas: int = 1) -> PipelineStage:
    policy = build_policy({"type": "hpa", "metric": "requests_per_replica", "target": 10.0,
                           "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}]}}})
    return PipelineStage(name, Autoscaler(policy, Behavior(min_replicas, max_replicas), interval_s=15.0), gpus)


def test_without_a_budget_each_stage_is_exactly_its_own_decide():
    stages = [hpa_stage("embed"), hpa_stage("llm")]
    snaps = {"embed": snapshot(40, 2), "llm": snapshot(120, 2)}
    records, states = decide_pipeline(stages, snaps, NOW, {"embed": 2, "llm": 2}, {})
    for s in stages:
        alone, state = decide(s.autoscaler, snaps[s.name], NOW, 2, s.autoscaler.initial_state())
        assert records[s.name] == alone and states[s.name] == state
    assert records["embed"].final == 4 and records["llm"].final == 10


def test_the_budget_cuts_across_stages_and_says_so_in_the_record():
    stages = [hpa_stage("embed"), hpa_stage("llm", gpus=2)]
    snaps = {"embed": snapshot(40, 2), "llm": snapshot(120, 2)}  # want 4 (4 GPUs) and 10 (20 GPUs)
    records, _ = decide_pipeline(stages, snaps, NOW, {"embed": 2, "llm": 2}, {}, max_gpus=12)
    finals = {n: r.final for n, r in records.items()}
    assert finals["embed"] * 1 + finals["llm"] * 2 <= 12
    assert finals == {"embed": 2, "llm": 5}  # both cut to half of what they asked: the cut follows the wants
    for name, asked in (("embed", 4), ("llm", 10)):
        step = records[name].steps[-1]
        assert (step.guard, step.before, step.after) == (BUDGET_GUARD, asked, finals[name])
        assert records[name].reason.startswith(f"{BUDGET_GUARD}: ") and "12 GPUs" in records[name].reason and "24" in records[name].reason


def test_a_stage_within_the_budget_is_not_touched_and_minimums_stand():
    stages = [hpa_stage("embed", min_replicas=2), hpa_stage("llm")]
    snaps = {"embed": snapshot(0, 2), "llm": snapshot(120, 2)}
    records, _ = decide_pipeline(stages, snaps, NOW, {"embed": 2, "llm": 2}, {}, max_gpus=6)
    assert records["embed"].final == 2 and not any(s.guard == BUDGET_GUARD for s in records["embed"].steps)
    assert records["llm"].final == 4 and records["llm"].steps[-1].guard == BUDGET_GUARD
    limits = [StageLimits("a", 3, 5), StageLimits("b", 2, 5)]
    assert within_budget({"a": 5, "b": 5}, limits, 1) == {"a": 3, "b": 2}  # below the minimums: they stand


def test_a_cpu_stage_costs_no_gpu():
    limits = [StageLimits("retrieve", 1, 8, gpus_per_replica=0), StageLimits("llm", 1, 8)]
    assert within_budget({"retrieve": 8, "llm": 8}, limits, 4) == {"retrieve": 8, "llm": 4}


def test_the_simulators_bound_is_this_budget_with_its_load_pressure():
    def stage(name, rate, cap):
        return StageSnapshot(name, "batch", 2, 0, 0, 1, 8, 0, 0.0, 0, rate, rate, cap, 0.5, 0.1, 1.0)

    snap = PipelineSnapshot(0.0, (stage("a", 10.0, 1.0), stage("b", 10.0, 5.0)), 10.0, 1.0, 1.0, 0, 0, 0.0, 5.0)
    # b is further below full utilisation (10 / (n x 5) against 10 / n): it gives up replicas first
    assert bound({"a": 6, "b": 6}, snap, 8) == {"a": 6, "b": 2}
    assert bound({"a": 6}, snap, None) == {"a": 6, "b": 2}  # a stage left out keeps its replicas


def test_fixed_policies_with_one_budget_give_the_same_answer_every_time():
    stages = [PipelineStage(n, Autoscaler(FixedPolicy(replicas=6), Behavior(1, 8))) for n in ("a", "b", "c")]
    snaps = {n: snapshot(10, 2) for n in "abc"}
    first, _ = decide_pipeline(stages, snaps, NOW, dict.fromkeys("abc", 2), {}, max_gpus=10)
    assert sorted(r.final for r in first.values()) == [3, 3, 4] and sum(r.final for r in first.values()) == 10


def test_while_the_running_fleet_fits_the_budget_refuses_growth_and_sheds_no_running_replica():
    stages = [PipelineStage(n, Autoscaler(FixedPolicy(replicas=want), Behavior(1, 8))) for n, want in (("a", 5), ("b", 3))]
    snaps = {n: snapshot(10, 3) for n in "ab"}
    records, _ = decide_pipeline(stages, snaps, NOW, {"a": 3, "b": 3}, {}, max_gpus=6)
    assert (records["a"].final, records["b"].final) == (3, 3)  # a's growth is refused; b keeps what runs
    assert records["a"].steps[-1].guard == BUDGET_GUARD and not records["b"].steps


def test_a_stage_holding_the_budget_gives_a_running_replica_to_one_that_needs_it_clearly_more():
    stages = [PipelineStage(n, Autoscaler(FixedPolicy(replicas=4), Behavior(1, 8))) for n in "ab"]
    snaps = {n: snapshot(10, 1) for n in "ab"}
    records, _ = decide_pipeline(stages, snaps, NOW, {"a": 4, "b": 1}, {}, max_gpus=5)
    assert (records["a"].final, records["b"].final) == (3, 2)  # b wanted 4 and had 1: a hands one over
