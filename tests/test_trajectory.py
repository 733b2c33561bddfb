"""The cluster reproduces its recorded trajectories exactly (see tests/trajectory.py).

Speed-ups of the engine, router, latency model and telemetry must keep every snapshot value,
every counter and every finished request's timeline bit for bit: the
comparison is exact equality of float64 values (NaN equal to NaN), because the
optimisations keep the order of floating-point operations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests import trajectory


@pytest.mark.parametrize("name", list(trajectory.SCENARIOS))
def test_cluster_reproduces_recorded_trajectory(name):
    scenario = trajectory.SCENARIOS[name]
    if name.startswith("conv") and not trajectory.CONV_TRACE.is_file():
        pytest.skip("Azure conversation trace not present")
    reference = dict(np.load(trajectory.reference_path(name)))
    actual = trajectory.run(scenario, trajectory.scenario_workload(scenario))
    assert trajectory.first_difference(reference, actual) is None, trajectory.first_difference(reference, actual)


def test_env_reproduces_recorded_episode():
    """kis/Autoscale-v0 with the roofline model: every observation, reward and step info as recorded."""
    if not trajectory.CONV_TRACE.is_file():
        pytest.skip("Azure conversation trace not present")
    reference = dict(np.load(trajectory.reference_path("env")))
    actual = trajectory.run_env(trajectory.env_workload())
    assert trajectory.first_difference(reference, actual) is None, trajectory.first_difference(reference, actual)


def test_comparison_sees_a_change_in_the_last_digits():
    """A latency model 1e-12 slower shifts the recorded timelines: the exact comparison notices."""
    scenario = trajectory.SCENARIOS["random-router"]
    reference = dict(np.load(trajectory.reference_path("random-router")))
    workload = trajectory.scenario_workload(scenario)
    slower = dataclasses.replace(scenario, pools=tuple((pool, slow * (1 + 1e-12), engine) for pool, slow, engine in scenario.pools))
    difference = trajectory.first_difference(reference, trajectory.run(slower, workload))
    assert difference is not None and difference.startswith(("snapshots", "counters", "req_"))
