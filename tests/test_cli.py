"""CLI smoke tests: every command has --help; the simulation commands run and emit JSON."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli.main import app

runner = CliRunner()
COMMANDS = [
    [], ["simulate"], ["evaluate"], ["demo"], ["train"], ["workload"], ["workload", "stats"], ["workload", "generate"],
    ["profile"], ["profile", "predict"], ["profile", "check"], ["profile", "measure"], ["controller"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kis")
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_simulate_json_and_plots(tmp_path):
    result = runner.invoke(app, ["simulate", "--workload", "spike", "--duration", "300", "--replicas", "2", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requests"] > 0 and 0 <= summary["slo_attainment"] <= 1 and summary["gpu_hours"] == pytest.approx(2 * 300 / 3600)
    assert (tmp_path / "run.png").stat().st_size > 10_000 and (tmp_path / "summary.json").exists()


def test_simulate_autoscaled_scales(tmp_path):
    result = runner.invoke(app, ["simulate", "--workload", "spike", "--duration", "600", "--replicas", "1", "--autoscale",
                                 "--policy", '{"type": "hpa", "target": 4}', "--out", str(tmp_path), "--no-plots", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scale_events"] >= 1


def test_simulate_rejects_bad_policy_and_trace(tmp_path):
    bad = runner.invoke(app, ["simulate", "--autoscale", "--policy", '{"type": "hpa"}', "--duration", "60"])
    assert bad.exit_code == 2 and "policy.target" in bad.output
    missing = runner.invoke(app, ["simulate", "--trace", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_evaluate_json_report_and_oracle(tmp_path):
    policies = tmp_path / "p.yaml"
    policies.write_text(yaml.safe_dump([{"name": "hpa", "spec": {"type": "hpa", "target": 8}}, {"name": "fixed", "spec": {"type": "fixed", "replicas": 2}}]))
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "spike", "--seeds", "0", "--duration", "600",
                                 "--out", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["overall"]) == {"hpa", "fixed", "oracle"}
    assert (tmp_path / "eval" / "report.md").read_text().count("| hpa |") >= 2
    assert (tmp_path / "eval" / "workload_spike.png").exists()


def test_evaluate_rejects_bad_policy_file(tmp_path):
    policies = tmp_path / "p.yaml"
    policies.write_text("name: not-a-list\n")
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "spike", "--seeds", "0"])
    assert result.exit_code == 2 and "expected a list of policies" in result.output


def test_train_rejects_a_bad_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("algo: sarsa\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "algo" in result.output


def test_train_qlearning_tiny(tmp_path):
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump({"algo": "qlearning", "total_steps": 40, "env": {"episode_duration_s": 300, "workloads": ["spike"]}}))
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "q"), "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["episodes"] == 2
    assert (tmp_path / "q" / "qtable.npz").exists() and (tmp_path / "q" / "episodes.csv").read_text().count("\n") == 3
