"""GPU specs, shapes, measured profiles, the spec-based model and its calibration."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli.main import app
from simulator.profiles import default_latency_model, get_gpu, load_shape
from simulator.profiles.calibrate import calibrate, error_report
from simulator.profiles.measured import ProfilePoint, load_profile
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel

runner = CliRunner()


def test_gpu_and_shape_lookups():
    assert get_gpu("h100").memory_gib == 80 and get_gpu("NVIDIA H100 80GB HBM3").name == "H100"
    assert get_gpu("l4").hourly_price_usd < get_gpu("H100").hourly_price_usd
    with pytest.raises(ValueError, match="unknown GPU 'B300'; known: H100"):
        get_gpu("B300")
    assert load_shape("llama-8b").params == pytest.approx(8.03e9, rel=0.01)
    with pytest.raises(ValueError, match="unknown model"):
        load_shape("gpt-9")


def test_profile_loads_and_its_shape_has_its_params(h100_profile):
    profile = load_profile(h100_profile)
    assert len(profile.phase("prefill")) == 11 and len(profile.phase("decode")) == 11
    assert profile.shape.params == json.loads(h100_profile.read_text())["params"] == 1_498_482_688
    assert load_shape(str(h100_profile)).hidden_size == 2048  # --model accepts a profile JSON


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("shape"), "missing object 'shape'"),
        (lambda d: d["shape"].pop("vocab_size"), "shape lacks vocab_size"),
        (lambda d: d["prefill"][2].pop("kernel_ms"), r"prefill\[2\] lacks 'kernel_ms'"),
        (lambda d: d["decode"][0].update(batch="many"), r"decode\[0\]"),
        (lambda d: d["decode"][1].update(wall_ms=-1), r"decode\[1\]: batch, context_len and timings must be positive"),
        (lambda d: d.update(decode=[]), "'decode' must be a non-empty list"),
    ],
)
def test_malformed_profiles_are_rejected_with_where(tmp_path, h100_profile, mutate, message):
    data = json.loads(h100_profile.read_text())
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_not_json_is_rejected(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match="cannot read profile"):
        load_profile(path)


MODEL = default_latency_model("H100", "llama-8b")


@settings(max_examples=200, deadline=None)
@given(batch=st.integers(1, 256), tokens=st.integers(1, 8192), extra=st.integers(1, 64))
def test_model_is_monotone_in_batch_and_tokens(batch, tokens, extra):
    assert MODEL.prefill_ms(batch + extra, tokens) >= MODEL.prefill_ms(batch, tokens)
    assert MODEL.prefill_ms(batch, tokens + extra) >= MODEL.prefill_ms(batch, tokens)
    assert MODEL.decode_ms(batch + extra, tokens) >= MODEL.decode_ms(batch, tokens)
    assert MODEL.decode_ms(batch, tokens + extra) >= MODEL.decode_ms(batch, tokens)


@settings(max_examples=100, deadline=None)
@given(p=st.integers(0, 4096), c=st.floats(0, 1e7), d=st.integers(0, 256), k=st.floats(0, 1e6))
def test_iteration_time_is_monotone_and_affine_in_decode_context(p, c, d, k):
    base = MODEL.iteration_ms(p, c, d, k)
    assert MODEL.iteration_ms(p + 1, c, d, k) >= base and MODEL.iteration_ms(p, c + 1, d, k) >= base
    assert MODEL.iteration_ms(p, c, d + 1, k) >= base
    mid = MODEL.iteration_ms(p, c, d, k + 500)
    assert mid - base == pytest.approx(MODEL.iteration_ms(p, c, d, k + 1000) - mid, rel=1e-6, abs=1e-9) or base <= MODEL.params.floor_ms


def test_calibration_recovers_known_parameters():
    gpu, shape = get_gpu("H100"), load_shape("llama-1b")
    truth = CalibrationParams(0.5, 0.7, 0.25, 0.4, 2.0, 0.0)
    model = SpecLatencyModel(gpu, shape, truth, gqa_expanded=True)
    points = [ProfilePoint("prefill", b, L, model.prefill_ms(b, L), 1.0) for b in (1, 4, 16) for L in (128, 512, 2048, 4096)]
    points += [ProfilePoint("decode", b, c, model.decode_ms(b, c), 1.0) for b in (1, 8, 32, 64, 128, 256) for c in (512, 2048)]
    fitted = calibrate(gpu, shape, points)
    report = error_report(SpecLatencyModel(gpu, shape, fitted, gqa_expanded=True), points)
    assert max(report.mape.values()) < 0.01


def test_calibration_beats_uncalibrated_defaults(h100_profile):
    profile = load_profile(h100_profile)
    gpu = get_gpu("H100")
    before = error_report(SpecLatencyModel(gpu, profile.shape, CalibrationParams(), gqa_expanded=True), profile.points)
    fitted = calibrate(gpu, profile.shape, profile.points)
    after = error_report(SpecLatencyModel(gpu, profile.shape, fitted, gqa_expanded=True), profile.points)
    assert all(after.mape[p] < before.mape[p] for p in ("prefill", "decode"))
    assert all(v <= 0.10 for v in after.mape.values())


def test_cli_predict_json():
    result = runner.invoke(app, ["profile", "predict", "--gpu", "H100", "--model", "llama-8b", "--phase", "decode", "--batch", "32", "--tokens", "2048", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["iteration_ms"] == pytest.approx(MODEL.decode_ms(32, 2048))
    slower = json.loads(runner.invoke(app, ["profile", "predict", "--gpu", "L4", "--model", "llama-8b", "--phase", "decode", "--batch", "32", "--tokens", "2048", "--json"]).stdout)
    assert slower["iteration_ms"] > out["iteration_ms"]
    bad = runner.invoke(app, ["profile", "predict", "--gpu", "X1", "--phase", "decode"])
    assert bad.exit_code == 2 and "unknown GPU" in bad.output


def test_cli_check_json(h100_profile):
    result = runner.invoke(app, ["profile", "check", "--calibration", str(h100_profile), "--against", str(h100_profile), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mape"]["prefill"] <= 0.1 and out["mape"]["decode"] <= 0.1 and len(out["points"]) == 22


def test_cli_measure_fails_clearly_without_gpu(tmp_path):
    result = runner.invoke(app, ["profile", "measure", "--model", "llama-1b", "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "needs torch and transformers" in result.output or "needs a CUDA GPU" in result.output
    assert runner.invoke(app, ["profile", "measure", "--out", str(tmp_path / "p.json"), "--batches", "1,x"]).exit_code == 2
