"""Serial, process-pool and local Ray executors: the same results in the same order, and a
failing cell is reported (which one, and why) while the others complete."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pytest

from simulator.cluster.config import ClusterConfig, NodePool
from simulator.evaluation.presets import PresetWorkload, preset_workloads, scaled
from simulator.evaluation.runner import EvaluationFailed, EvaluationSetup, PolicyEntry, WorkloadEntry, evaluate
from simulator.evaluation.sweep import Knob, sweep, sweep_size
from simulator.executor import ProcessExecutor, RayExecutor, SerialExecutor, make_executor
from simulator.workloads.workload import Workload

SETUP = EvaluationSetup(cluster=ClusterConfig(pools=(NodePool(max_nodes=1),)), max_replicas=6)
POLICIES = [PolicyEntry("hpa", {"type": "hpa", "metric": "requests_per_replica", "target": 4.0}),
            PolicyEntry("fixed", {"type": "fixed", "replicas": 2})]


def power_or_fail(shared: dict, cell: int) -> dict:
    """A cell function the workers import: ``base ** cell``, or a ValueError for the cells in ``shared['fail']``."""
    if cell in shared["fail"]:
        raise ValueError(f"cell {cell} was told to fail")
    return {"cell": cell, "value": shared["base"] ** cell, "pid": os.getpid()}


@dataclass(frozen=True)
class FailsForSeed:
    """A workload maker that raises for one seed (picklable, so workers can run it)."""

    base: PresetWorkload
    bad_seed: int

    def __call__(self, seed: int) -> Workload:
        if seed == self.bad_seed:
            raise ValueError(f"no workload for seed {seed}")
        return self.base(seed)


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    executor = RayExecutor("auto", num_cpus=2)
    executor.workers  # start Ray once for the module
    yield executor
    executor.close()


@pytest.fixture(params=["serial", "process", "ray"])
def executor(request):
    if request.param == "serial":
        return SerialExecutor()
    if request.param == "process":
        return ProcessExecutor(2)
    return request.getfixturevalue("ray_executor")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_same_records(expected, actual) -> None:
    assert [(r.policy, r.workload, r.seed) for r in actual] == [(r.policy, r.workload, r.seed) for r in expected]
    for e, a in zip(expected, actual):
        assert e.summary.keys() == a.summary.keys()
        assert all(_same(e.summary[k], a.summary[k]) for k in e.summary), (e.policy, e.workload, e.seed)
        if e.result is not None:
            for column in ("arrival_s", "ttft_s", "tpot_s", "e2e_s"):
                np.testing.assert_array_equal(getattr(a.result.requests, column), getattr(e.result.requests, column))
            assert a.result.timeline.ready == e.result.timeline.ready
            assert a.result.cost_usd == e.result.cost_usd


def test_outcomes_come_in_cell_order_and_a_failure_names_its_cell(executor):
    cells = list(range(8))
    done = []
    outcomes = executor.map(power_or_fail, {"base": 3, "fail": {2, 5}}, cells, labels=[f"c{i}" for i in cells],
                            weights=[float(i) for i in cells], on_done=lambda o: done.append(o.index))  # heaviest (last) first
    assert [o.index for o in outcomes] == cells
    assert sorted(done) == cells
    assert [o.value["value"] for o in outcomes if o.ok] == [3**i for i in cells if i not in (2, 5)]
    failed = [o.failure for o in outcomes if not o.ok]
    assert [f.label for f in failed] == ["c2", "c5"]
    assert failed[0].error == "ValueError: cell 2 was told to fail"
    assert "power_or_fail" in failed[0].traceback
    if executor.name != "serial":
        assert all(o.value["pid"] != os.getpid() for o in outcomes if o.ok)  # the work ran in other processes


def test_pool_refuses_what_cannot_be_sent_to_workers():
    with pytest.raises(ValueError, match="cannot send the cell function"):
        ProcessExecutor(2).map(lambda shared, cell: cell, None, [1, 2])


@pytest.fixture(scope="module")
def grid():
    spike = preset_workloads(["spike"], 300.0)[0]
    return [spike, scaled(spike, 2.0)]


@pytest.fixture(scope="module")
def serial_records(grid):
    return evaluate(POLICIES, grid, [0, 1], SETUP)


def test_evaluation_is_the_same_on_every_executor(executor, grid, serial_records):
    assert [r.workload for r in serial_records][::3] == ["spike", "spike", "spike_x2", "spike_x2"]
    assert_same_records(serial_records, evaluate(POLICIES, grid, [0, 1], SETUP, executor=executor))


def test_a_failing_run_is_reported_and_the_others_complete(executor, serial_records):
    grid = [WorkloadEntry("spike", FailsForSeed(PresetWorkload("spike", 300.0), bad_seed=1))]
    failures = []
    records = evaluate(POLICIES, grid, [0, 1], SETUP, executor=executor, failures=failures)
    assert [(f.policy, f.workload, f.seed) for f in failures] == [("hpa", "spike", 1), ("fixed", "spike", 1), ("oracle", "spike", 1)]
    assert all(f.error == "ValueError: no workload for seed 1" for f in failures)
    assert_same_records([r for r in serial_records if r.workload == "spike" and r.seed == 0], records)


def test_without_a_failure_list_the_evaluation_raises_after_the_others_completed():
    grid = [WorkloadEntry("spike", FailsForSeed(PresetWorkload("spike", 120.0), bad_seed=0))]
    with pytest.raises(EvaluationFailed, match=r"1 of 2 runs failed: fixed on spike \(seed 0\): ValueError") as info:
        evaluate(POLICIES[1:], grid, [0, 1], SETUP, include_oracle=False)
    assert [(r.policy, r.seed) for r in info.value.records] == [("fixed", 1)]


def test_sweep_is_the_same_on_the_pool():
    grid = preset_workloads(["spike"], 240.0)
    knobs = {"hpa": Knob("target", (2.0, 8.0), lambda spec, v: {**spec, "target": v})}
    done = []
    serial = sweep(POLICIES[:1], grid, [0], SETUP, oracle_targets=(0.9,), knobs=knobs, on_point=lambda p, v: done.append((p, v)))
    pooled = sweep(POLICIES[:1], grid, [0], SETUP, oracle_targets=(0.9,), knobs=knobs, executor=ProcessExecutor(2))
    assert pooled == serial and [p.knob_value for p in serial] == [2.0, 8.0, 0.9]
    assert sorted(done) == [("hpa", 2.0), ("hpa", 8.0), ("oracle", 0.9)]
    assert sweep_size(POLICIES[:1], 1, 1, oracle_targets=(0.9,), knobs=knobs) == 3


def test_make_executor_reads_the_command_line():
    assert make_executor(1).name == "serial"
    assert make_executor(3).workers == 3
    assert make_executor(None, "auto").name == "ray"
    with pytest.raises(ValueError, match="ray://HOST:PORT"):
        make_executor(None, "localhost:6379")


def test_a_learned_policy_runs_where_its_artifact_folder_does_not_exist(tmp_path):
    """Workers on another machine get the artifact's files with the plan (a Ray cluster has no copy of the driver's disk)."""
    import shutil

    from simulator.evaluation.cells import Cell, make_plan, run_cell
    from simulator.evaluation.presets import DEFAULT_ARTIFACT

    shutil.copytree(DEFAULT_ARTIFACT, tmp_path / "policy")
    learned = [PolicyEntry("learned", {"type": "learned", "artifact": str(tmp_path / "policy")})]
    grid = preset_workloads(["spike"], 180.0)
    here = run_cell(make_plan(learned, grid, SETUP), Cell(0, 0, 0))
    plan = make_plan(learned, grid, SETUP)
    shutil.rmtree(tmp_path / "policy")  # as on a worker of another machine
    elsewhere = run_cell(plan, Cell(0, 0, 0))
    assert_same_records([here], [elsewhere])
    assert elsewhere.result.decisions[0].policy == "learned"
