"""``kis pipeline evaluate``: the table fits 80 columns, --json has every metric, bad input is one line, exit 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from simulator.cli.main import app

runner = CliRunner()
SMALL = ["pipeline", "evaluate", "--pipelines", "disagg", "--patterns", "spike", "--duration", "60", "--bottleneck-every", "2"]


def test_json_has_every_metric_per_controller():
    result = runner.invoke(app, [*SMALL, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["controller"] for r in rows] == ["hpa", "kpa", "planner", "incontext"]
    for row in rows:
        assert {"p99_s", "mean_s", "slo_attainment", "cost_usd", "gpu_hours", "scale_events", "bottleneck_accuracy"} <= set(row)
        assert row["cost_usd"] > 0 and row["seeds"][0]["completed"] == row["seeds"][0]["requests"]


def test_the_table_fits_80_columns():
    result = runner.invoke(app, SMALL, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "incontext" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "\u2026" not in result.stdout  # no cell cut short to fit


def test_an_unreachable_llm_falls_back_to_the_planner_and_the_table_says_so():
    result = runner.invoke(app, [*SMALL, "--controllers", "incontext", "--llm-url", "http://127.0.0.1:9", "--llm-model", "m"],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    summary = [line for line in result.stdout.splitlines() if line.startswith("LLM m:")]
    assert len(summary) == 1 and "fell back to the planner" in summary[0] and "0 tokens" in summary[0]


def test_an_unknown_pipeline_is_one_line_and_exit_2():
    result = runner.invoke(app, ["pipeline", "evaluate", "--pipelines", "nope"])
    assert result.exit_code == 2
    assert "PipelineSpecError" in result.output and "unknown pipeline" in result.output
    assert "Traceback" not in result.output


def test_a_bad_yaml_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {name: a, kind: teleport}\n")
    result = runner.invoke(app, ["pipeline", "evaluate", "--pipelines", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:a: unknown kind" in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_an_unknown_controller_is_exit_2():
    result = runner.invoke(app, [*SMALL, "--controllers", "magic"])
    assert result.exit_code == 2 and "magic" in result.output
