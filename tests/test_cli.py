"""CLI smoke tests: every command has --help; the simulation commands run and emit JSON."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli.main import app

runner = CliRunner()
COMMANDS = [
    [], ["simulate"], ["evaluate"], ["demo"], ["train"], ["workload"], ["workload", "stats"], ["workload", "generate"],
    ["profile"], ["profile", "predict"], ["profile", "check"], ["profile", "measure"], ["controller"], ["capacity"], ["obs", "schema"],
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


def test_evaluate_reports_a_failed_run_and_keeps_the_others(tmp_path, monkeypatch):
    """A run that raises (here: a simulation failing for one policy) is reported by policy, workload and seed; the
    others complete. Policy files are checked before anything runs, so the failure is injected into the run itself
    (in this process: ``--workers 1``; the pool's and Ray's failure paths are tested in test_executor.py)."""
    import simulator.evaluation.cells as cells

    real = cells.run_cell

    def flaky(plan, cell):
        if cell.policy is not None and plan.policies[cell.policy].name == "broken":
            raise RuntimeError("the simulation diverged")
        return real(plan, cell)

    monkeypatch.setattr(cells, "run_cell", flaky)
    policies = tmp_path / "p.yaml"
    policies.write_text(yaml.safe_dump([{"name": "fixed", "spec": {"type": "fixed", "replicas": 2}},
                                        {"name": "broken", "spec": {"type": "fixed", "replicas": 3}}]))
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "spike", "--seeds", "0,1", "--duration", "120",
                                 "--no-oracle", "--workers", "1", "--out", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert [(f["policy"], f["seed"]) for f in out["failed"]] == [("broken", 0), ("broken", 1)]
    assert "broken on spike (seed 0): RuntimeError: the simulation diverged" in result.stderr
    assert set(out["overall"]) == {"fixed"} and out["per_workload"]["fixed/spike"]["seeds"] == 2


def test_evaluate_rejects_bad_policy_file(tmp_path):
    policies = tmp_path / "p.yaml"
    policies.write_text("name: not-a-list\n")
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "spike", "--seeds", "0"])
    assert result.exit_code == 2 and "expected a list of policies" in result.output


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "mine", "spec": {"type": "learned", "artifact": "nowhere"}}, r"policy #1 \(mine\): policy artifact .*nowhere: no such directory"),
    ({"name": "h", "spec": {"type": "hpa", "target": -1}}, r"policy #1 \(h\): policy.target"),
    ({"name": "h", "spec": {"type": "hpa", "target": 4}, "behavior": {"max_step_up": 0}}, r"policy #1 \(h\): max_step_up must be >= 1"),
    ({"name": "h", "spec": "hpa"}, r"policy #1 needs 'name' and a 'spec' mapping"),
])
def test_evaluate_names_the_bad_entry_in_one_line(tmp_path, entry, message):
    policies = tmp_path / "p.yaml"
    policies.write_text(yaml.safe_dump([entry]))
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "spike", "--seeds", "0"])
    assert result.exit_code == 2 and re.search(message, result.output) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_learned_entry_without_an_artifact_runs_the_shipped_default_and_rates_scale(tmp_path):
    policies = tmp_path / "p.yaml"
    policies.write_text(yaml.safe_dump([{"name": "mine", "spec": {"type": "learned"}}]))
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:{m:02d}:{s:02d}.0,{500 + s},{40 + m}\n" for m in range(5) for s in range(0, 60, 2)) + "oops,1\n")
    refused = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "", "--trace", str(trace), "--seeds", "0"])
    assert refused.exit_code == 2 and "t.csv" in refused.output and "Traceback" not in refused.output
    result = runner.invoke(app, ["evaluate", "--policies", str(policies), "--workloads", "", "--trace", str(trace), "--skip-bad-rows",
                                 "--rate-scale", "2", "--seeds", "0", "--no-oracle", "--out", str(tmp_path / "e"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["per_workload"]) == {"mine/t_x2"}
    assert out["per_workload"]["mine/t_x2"]["requests"] == 300  # 150 rows kept, copied twice


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


def test_capacity_prints_a_spec_block_the_controller_accepts(tmp_path):
    from controller.spec import parse_autoscaler
    from tests.controller_helpers import autoscaler

    result = runner.invoke(app, ["capacity", "--gpu", "H100", "--model", "llama-8b", "--out", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    block = yaml.safe_load((tmp_path / "c.yaml").read_text())["capacity"]
    assert len(block["maxRps"]) == len(block["promptTokens"]) and len(block["maxRps"][0]) == len(block["outputTokens"])
    spec = parse_autoscaler(autoscaler("a", "llm", policy={"type": "planner"}, capacity=block))
    profile = spec.capacity.profile()
    assert profile.rps(512, 128) > profile.rps(4096, 128)  # long prompts: fewer requests per replica
    assert profile.rps(1024, 256, replicas=8) >= profile.rps(1024, 256)  # a fleet pools
    bad = runner.invoke(app, ["capacity", "--gpu", "B300"])
    assert bad.exit_code == 2 and "unknown GPU 'B300'" in bad.output


def test_obs_schema_lists_every_feature_in_order():
    from controller.observation import FEATURE_NAMES, SCHEMA_VERSION

    out = json.loads(runner.invoke(app, ["obs", "schema", "--json"]).stdout)
    assert out["version"] == SCHEMA_VERSION and [f["name"] for f in out["features"]] == list(FEATURE_NAMES)
    table = runner.invoke(app, ["obs", "schema"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and all(name in table.stdout for name in FEATURE_NAMES)
