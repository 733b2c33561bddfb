"""PPO on kis/Pipeline-v0: kis pipeline train saves a model, kis pipeline evaluate --ppo runs it under the budget."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("stable_baselines3")
pytestmark = [pytest.mark.train, pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

from typer.testing import CliRunner  # noqa: E402

from simulator.cli.main import app  # noqa: E402
from simulator.pipeline.episode import run_episode  # noqa: E402
from simulator.pipeline.ppo import PpoController  # noqa: E402
from simulator.pipeline.spec import builtin_pipeline  # noqa: E402
from simulator.pipeline.stagewise import Guarded  # noqa: E402
from simulator.pipeline.workloads import pipeline_workload  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo")
    result = runner.invoke(app, ["pipeline", "train", "--pipeline", "speech", "--steps", "300", "--out", str(out), "--budget", "7"])
    assert result.exit_code == 0, result.output
    return out


def test_train_saves_a_model_and_its_metadata(trained):
    meta = json.loads((trained / "meta.json").read_text())
    assert (trained / "model.zip").is_file()
    assert meta["pipeline"] == "speech" and meta["gpu_budget"] == 7 and meta["steps"] == 300


def test_the_trained_policy_runs_a_pipeline_within_its_budget(trained):
    controller = PpoController.load(trained)
    result = run_episode(builtin_pipeline("speech"), pipeline_workload("spike", seed=1, duration_s=120.0), Guarded(controller, budget=7))
    assert len(result.decisions) == 8
    assert all(sum(d["replicas"].values()) <= 7 and len(d["action"]) == 3 for d in result.decisions)
    assert result.metrics["completed"] == result.metrics["requests"]


def test_evaluate_adds_ppo_for_its_pipeline_only(trained):
    args = ["pipeline", "evaluate", "--pipelines", "speech,disagg", "--patterns", "spike", "--duration", "60",
            "--controllers", "planner", "--bottleneck-every", "0", "--ppo", str(trained), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["pipeline"], r["controller"]) for r in rows] == [("speech", "planner"), ("speech", "ppo"), ("disagg", "planner")]


def test_a_directory_without_a_model_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["pipeline", "evaluate", "--pipelines", "rag", "--ppo", str(tmp_path)])
    assert result.exit_code == 2 and "no trained model" in result.output and "Traceback" not in result.output
