"""Pipeline specs: built-ins, validation and YAML with one-line errors."""

from __future__ import annotations

import pytest

from simulator.pipeline.spec import PipelineSpec, PipelineSpecError, StageSpec, builtin_pipeline, load_pipeline, resolve_pipeline


@pytest.mark.parametrize("name, kinds", [("rag", ["batch", "batch", "llm"]), ("speech", ["batch", "llm", "batch"]),
                                         ("disagg", ["prefill", "decode"])])
def test_builtins_have_their_stages(name, kinds):
    spec = builtin_pipeline(name)
    assert [s.kind for s in spec.stages] == kinds


def test_price_comes_from_the_gpu_table_unless_set():
    assert StageSpec("a", "batch", gpu="L4", base_s=0.1).price_per_hour == 0.80
    assert StageSpec("a", "batch", gpu="L4", base_s=0.1, hourly_price=0.5).price_per_hour == 0.5


def test_disagg_has_kv_transfer():
    assert builtin_pipeline("disagg").kv_transfer_s > 0


@pytest.mark.parametrize("stages, message", [
    ((StageSpec("p", "prefill"),), "followed by a decode"),
    ((StageSpec("d", "decode"),), "must follow a prefill"),
    ((StageSpec("a", "llm"), StageSpec("a", "llm")), "unique"),
])
def test_bad_chains_are_refused(stages, message):
    with pytest.raises(PipelineSpecError, match=message):
        PipelineSpec("x", stages)


def test_kv_transfer_needs_a_prefill_stage():
    with pytest.raises(PipelineSpecError, match="kv_transfer_s"):
        PipelineSpec("x", (StageSpec("a", "llm"),), kv_transfer_s=0.1)


GOOD = """
name: mine
slo_p99_s: 5
stages:
  - {name: embed, kind: batch, gpu: L4, base_s: 0.05, per_item_s: 0.01, max_batch: 8, max_replicas: 4}
  - {name: gen, kind: llm, gpu: H100, model: llama-8b, cold_start_s: 30}
"""


def test_yaml_pipeline_loads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    spec = load_pipeline(path)
    assert spec.name == "mine" and spec.names == ("embed", "gen") and spec.slo_p99_s == 5.0
    assert spec.stage("embed").max_batch == 8 and spec.stage("gen").cold_start_s == 30.0
    assert resolve_pipeline(str(path)) == spec


@pytest.mark.parametrize("text, where, what", [
    ("stages:\n  - {name: a, kind: gpu}\n", ":a:", "unknown kind"),
    ("stages:\n  - {name: a, kind: batch, base_s: 0.1, gpu: TPU}\n", ":a:", "unknown GPU"),
    ("stages:\n  - {name: a, kind: batch, base_s: 0.1, colour: red}\n", ":a:", "unknown key(s) colour"),
    ("stages:\n  - {name: a, kind: batch, base_s: fast}\n", ":a:", "could not convert"),
    ("stages:\n  - {name: a, kind: batch}\n", ":a:", "base_s"),
    ("stages:\n  - {name: a, kind: batch, base_s: 0.1, max_batch: 1.5}\n", ":a:", "integer"),
    ("stages:\n  - {kind: llm}\n", ":stage #1:", "missing 'name'"),
    ("stages: []\n", ":", "non-empty list"),
    ("stages: [\n", ":", "not valid YAML"),
    ("- 1\n", ":", "expected a mapping"),
    ("stages:\n  - {name: a, kind: llm, model: nope}\n", ":a:", "nope"),
])
def test_yaml_errors_are_one_line_naming_file_and_stage(tmp_path, text, where, what):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PipelineSpecError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{where}"), message
    assert what in message


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(PipelineSpecError, match="cannot read"):
        load_pipeline(tmp_path / "none.yaml")


def test_unknown_builtin():
    with pytest.raises(PipelineSpecError, match="unknown pipeline"):
        resolve_pipeline("nope")
