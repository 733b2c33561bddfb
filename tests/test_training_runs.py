"""Several training runs at once (kis train --seeds/--set) and reproducibility: the same config
and seed train the same policy in this process, in a pool worker and with SubprocVecEnv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("stable_baselines3")
pytestmark = [pytest.mark.train, pytest.mark.filterwarnings("ignore::FutureWarning")]

from controller.artifact import load_artifact  # noqa: E402
from controller.observation import OBSERVATION_SIZE  # noqa: E402
from simulator.cli.main import app  # noqa: E402
from simulator.training.config import TrainConfig  # noqa: E402
from simulator.training.runs import RunSpec, parse_set, plan_runs, train_run, write_run  # noqa: E402

TINY = {
    "algo": "ppo", "total_steps": 256, "seed": 0, "n_envs": 2, "net_arch": [16],
    "hyperparameters": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "cluster": {"max_nodes": 1},
    "env": {"workloads": ["spike"], "episode_duration_s": 300, "max_replicas": 4, "rate_scale": [0.8, 1.2]},
    "eval": {"every_steps": 128, "episodes": 1},
}


def _metadata(artifact: Path) -> dict:
    meta = json.loads((artifact / "metadata.json").read_text())
    for key in ("exported", "train_seconds"):  # when it ran, and for how long
        meta["provenance"].pop(key)
    return meta


def _files(run: Path) -> list[str]:
    """The files of a run folder (a TensorBoard file is named by its time and process)."""
    return sorted("events.out.tfevents" if p.name.startswith("events.out.tfevents") else str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def assert_same_policy(a: Path, b: Path) -> None:
    assert (a / "policy.onnx").read_bytes() == (b / "policy.onnx").read_bytes()
    assert _metadata(a) == _metadata(b)
    obs = np.random.default_rng(0).uniform(-3, 3, size=(500, OBSERVATION_SIZE)).astype(np.float32)
    np.testing.assert_array_equal(load_artifact(a).actions(obs), load_artifact(b).actions(obs))


def test_parse_set_and_plan_runs():
    assert parse_set("env.slo_weight=0.1,0.2") == ("env.slo_weight", [0.1, 0.2])
    assert parse_set("hyperparameters.learning_rate=3e-4") == ("hyperparameters.learning_rate", [0.0003])
    assert parse_set("env.workloads=[ramp,spike],[llm-day]") == ("env.workloads", [["ramp", "spike"], ["llm-day"]])
    base = TrainConfig.model_validate(TINY)
    specs = plan_runs(base, [0, 1], [parse_set("env.slo_weight=0.1,0.2")], Path("out/x"))
    assert [s.name for s in specs] == ["seed0-env.slo_weight=0.1", "seed1-env.slo_weight=0.1", "seed0-env.slo_weight=0.2", "seed1-env.slo_weight=0.2"]
    assert [(s.config["seed"], s.config["env"]["slo_weight"]) for s in specs] == [(0, 0.1), (1, 0.1), (0, 0.2), (1, 0.2)]
    assert specs[3].out_dir == str(Path("out/x/seed1-env.slo_weight=0.2"))
    with pytest.raises(ValueError, match="env.slo_wieght: Extra inputs are not permitted"):
        plan_runs(base, [0], [parse_set("env.slo_wieght=0.1")], Path("out/x"))
    with pytest.raises(ValueError, match="env.slo_weight: Input should be greater than or equal to 0"):
        plan_runs(base, [0], [parse_set("env.slo_weight=-1")], Path("out/x"))
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_set("env.slo_weight")


def test_same_config_and_seed_train_the_same_policy_wherever_they_run(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(config), "--seeds", "0,1", "--workers", "2", "--out", str(tmp_path / "grid"), "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [r["run"] for r in runs] == ["seed0", "seed1"] and [r["seed"] for r in runs] == [0, 1]
    assert json.loads((tmp_path / "grid" / "runs.json").read_text()) == runs
    grid_seed0 = tmp_path / "grid" / "seed0" / "artifact"
    # The same config and seed in this process: the same policy, byte for byte.
    here = write_run(train_run(None, RunSpec("here", TrainConfig.model_validate(TINY).model_dump(mode="json"), str(tmp_path / "here"))))
    assert_same_policy(grid_seed0, Path(here["artifact"]))
    assert _files(tmp_path / "here") == _files(tmp_path / "grid" / "seed0")  # the driver got every file the worker wrote
    # Its environments in subprocesses: still the same policy.
    subproc = TrainConfig.model_validate({**TINY, "vec_env": "subproc"}).model_dump(mode="json")
    write_run(train_run(None, RunSpec("subproc", subproc, str(tmp_path / "subproc"))))
    assert (tmp_path / "subproc" / "artifact" / "policy.onnx").read_bytes() == (grid_seed0 / "policy.onnx").read_bytes()
    # Another seed trains another policy (the comparison above can fail).
    assert (tmp_path / "grid" / "seed1" / "artifact" / "policy.onnx").read_bytes() != (grid_seed0 / "policy.onnx").read_bytes()
