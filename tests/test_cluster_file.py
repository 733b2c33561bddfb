"""Cluster files (kis calibrate writes them; simulate, evaluate and train read them) and the engine and calibration options."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli.main import app
from simulator.cluster.build import resolve_pools
from simulator.cluster.file import ClusterSection, load_cluster_file, write_cluster_file
from simulator.profiles import default_calibration

runner = CliRunner()


def test_a_cluster_file_round_trips_with_relative_calibration(tmp_path):
    calibration = tmp_path / "c.json"
    calibration.write_text(default_calibration().to_json())
    section = ClusterSection(gpu="A100", model="llama-1b", engine="eager", calibration=("c.json",), model_load_s=42.0, lifecycle_jitter=0.1)
    path = write_cluster_file(section, tmp_path / "cluster.yaml", "from a test")
    assert path.read_text().startswith("# from a test\n")
    loaded = load_cluster_file(path)
    assert loaded.calibration == (str(calibration),) and loaded.model_load_s == 42.0
    config = loaded.build(max_nodes=3)
    assert (config.engine, config.pools[0].gpu, config.pools[0].max_nodes, config.lifecycle.jitter) == ("eager", "A100", 3, 0.1)
    assert resolve_pools(config)[0].model.mode.name == "eager"


@pytest.mark.parametrize(("content", "message"), [
    ("gpu: H100\nreplicas: 3\n", "invalid cluster file: replicas: Extra inputs are not permitted"),
    ("engine: tgi\n", "engine: Value error, unknown engine 'tgi'"),
    ("calibration: missing.json\n", "calibration: no such file"),
    ("- just\n- a list\n", "a cluster file must be a mapping"),
])
def test_bad_cluster_files_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "cluster.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_cluster_file(path)
    result = runner.invoke(app, ["simulate", "--cluster", str(path), "--workload", "spike", "--duration", "60", "--no-plots"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "error:" in result.output


def test_simulate_flags_override_the_cluster_file_and_engines_differ(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"gpu": "H100", "engine": "eager"}))
    args = ["simulate", "--workload", "spike", "--duration", "120", "--replicas", "1", "--no-plots", "--json", "--out", str(tmp_path / "o")]
    eager = json.loads(runner.invoke(app, [*args, "--cluster", str(path)]).stdout)
    paged = json.loads(runner.invoke(app, [*args, "--cluster", str(path), "--engine", "paged"]).stdout)
    assert paged["tpot_p50_s"] < eager["tpot_p50_s"]  # vLLM's paged attention and fused kernels beat eager Hugging Face
    bad = runner.invoke(app, [*args, "--calibration", str(tmp_path / "nope.json")])
    assert bad.exit_code == 2 and "nope.json: cannot read" in bad.output
