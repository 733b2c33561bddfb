"""GPU specs, shapes, engine modes, measured profiles, the spec-based model and its calibration."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli.main import app
from simulator.profiles import default_calibration, default_latency_model, get_engine, get_gpu, load_calibration, load_shape
from simulator.profiles.calibrate import MODEL_ERROR, calibrate, leave_one_out
from simulator.profiles.latency import decode_times
from simulator.profiles.measured import MeasuredProfile, ProfilePoint, load_profile
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from tests.trajectory import PinnedLatency

runner = CliRunner()
H100 = get_gpu("H100")
#: Every kernel at the datasheet peak, no per-kernel time: the terms are the textbook bounds.
IDEAL = {engine: CalibrationParams(1.0, 1.0, 1.0, 1.0, 0.0, 0.0, engine=engine) for engine in ("paged", "eager", "eager-repeat-kv")}


@pytest.fixture(scope="module")
def shared_profiles(shared_dir) -> list[MeasuredProfile]:
    paths = [shared_dir / "gpu-profiles" / f"h100_llama-{size}.json" for size in ("1b", "8b")]
    if not all(p.is_file() for p in paths):
        pytest.skip("shared H100 profiles not present")
    return [load_profile(p) for p in paths]


def test_gpu_and_shape_lookups():
    assert get_gpu("h100").memory_gib == 80 and get_gpu("NVIDIA H100 80GB HBM3").name == "H100"
    assert get_gpu("l4").hourly_price_usd < get_gpu("H100").hourly_price_usd
    with pytest.raises(ValueError, match="unknown GPU 'B300'; known: H100"):
        get_gpu("B300")
    assert load_shape("llama-8b").params == pytest.approx(8.03e9, rel=0.01)
    with pytest.raises(ValueError, match="unknown model"):
        load_shape("gpt-9")
    assert get_engine("vllm").name == "paged"
    with pytest.raises(ValueError, match="unknown engine 'tgi'; known: eager"):
        get_engine("tgi")


def test_profile_loads_with_its_shape_gpu_engine_and_versions(h100_profile):
    profile = load_profile(h100_profile)
    assert len(profile.phase("prefill")) == 11 and len(profile.phase("decode")) == 11
    assert profile.shape.params == json.loads(h100_profile.read_text())["params"] == 1_498_482_688
    assert load_shape(str(h100_profile)).hidden_size == 2048  # --model accepts a profile JSON
    assert profile.spec().name == "H100" and profile.engine == "eager"  # the shared profiles are eager Hugging Face
    assert dict(profile.software)["torch"] == "2.11.0+cu130"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("shape"), "missing object 'shape'"),
        (lambda d: d["shape"].pop("vocab_size"), "shape lacks vocab_size"),
        (lambda d: d["prefill"][2].pop("kernel_ms"), r"prefill\[2\] lacks 'kernel_ms'"),
        (lambda d: d["decode"][0].update(batch="many"), r"decode\[0\]"),
        (lambda d: d["decode"][1].update(wall_ms=-1), r"decode\[1\]: batch, context_len and timings must be positive"),
        (lambda d: d.update(decode=[]), "'decode' must be a non-empty list"),
        (lambda d: d.update(engine="tgi"), "field 'engine': unknown engine 'tgi'"),
        (lambda d: d.update(software=["torch"]), "field 'software' must be an object"),
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


def test_malformed_calibration_files_say_what(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"compute_eff": 0.5, "overhead_ms": 1.0}))
    with pytest.raises(ValueError, match="unknown calibration field.*overhead_ms"):
        CalibrationParams.load(path)
    path.write_text(json.dumps({"memory_eff": 1.7}))
    with pytest.raises(ValueError, match=r"memory_eff must be in \(0, 1\]"):
        CalibrationParams.load(path)
    with pytest.raises(ValueError, match="unknown engine"):
        CalibrationParams(engine="tgi")


# --------------------------------------------------------------- monotonicity and shape of the model
MODELS = [default_latency_model("H100", shape, timing, engine=engine)
          for shape in ("llama-8b", "llama-13b", "qwen2.5-7b") for engine in ("paged", "eager", "eager-repeat-kv") for timing in ("kernel", "wall")]


@settings(max_examples=200, deadline=None)
@given(i=st.integers(0, len(MODELS) - 1), batch=st.integers(1, 256), tokens=st.integers(1, 8192), extra=st.integers(1, 64))
def test_model_is_monotone_in_batch_tokens_and_context(i, batch, tokens, extra):
    model = MODELS[i]
    assert model.prefill_ms(batch + extra, tokens) >= model.prefill_ms(batch, tokens)
    assert model.prefill_ms(batch, tokens + extra) >= model.prefill_ms(batch, tokens)
    assert model.decode_ms(batch + extra, tokens) >= model.decode_ms(batch, tokens)
    assert model.decode_ms(batch, tokens + extra) >= model.decode_ms(batch, tokens)


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, len(MODELS) - 1), p=st.integers(0, 4096), c=st.floats(0, 1e7), d=st.integers(0, 256), k=st.floats(0, 1e6))
def test_iteration_time_is_monotone_and_affine_in_decode_context(i, p, c, d, k):
    model = MODELS[i]
    base = model.iteration_ms(p, c, d, k)
    assert model.iteration_ms(p + 1, c, d, k) >= base and model.iteration_ms(p, c + 1, d, k) >= base
    assert model.iteration_ms(p, c, d + 1, k) >= base
    mid = model.iteration_ms(p, c, d, k + 500)
    floor = model.terms(p, c, d, k)["host_floor"]
    assert mid - base == pytest.approx(model.iteration_ms(p, c, d, k + 1000) - mid, rel=1e-6, abs=1e-9) or base <= floor


@settings(max_examples=200, deadline=None)
@given(i=st.integers(0, len(MODELS) - 1), batch=st.integers(0, 512), context=st.integers(0, 10**7), half=st.booleans())
def test_decode_time_is_the_decode_iteration_bit_for_bit(i, batch, context, half):
    """The engine's decode runs use decode_time; trajectories stay identical only if every bit agrees."""
    model = MODELS[i]
    c = context + 0.5 if half else context  # the engine asks at integer contexts and at a run's mean
    assert model.decode_time(batch)(c) == model.iteration_ms(0, 0.0, batch, c)
    assert decode_times(PinnedLatency(1.3))(batch)(c) == PinnedLatency(1.3).iteration_ms(0, 0.0, batch, c)


def test_terms_add_up_to_the_iteration():
    model = default_latency_model("H100", "llama-8b")
    terms = model.terms(512, 512 * 513 / 2, 16, 16 * 900.0, 1)
    assert sum(v for k, v in terms.items() if k != "host_floor") == pytest.approx(model.iteration_ms(512, 512 * 513 / 2, 16, 16 * 900.0, 1))


# --------------------------------------------------------------- worked numbers
def test_kv_bytes_mha_vs_gqa_worked_numbers():
    # Decode at batch 32 and 512 cached tokens = 16,384 cached tokens.
    # llama-8b: 32 layers x 8 KV heads x 128 = 1,024 KV width; K and V in bf16: 2 * 32 * 1024 * 2 = 131,072 B/token.
    # llama-13b (MHA): 40 layers x 40 KV heads x 128 = 5,120; 2 * 40 * 5120 * 2 = 819,200 B/token: 6.25x per token.
    gqa, mha = load_shape("llama-8b"), load_shape("llama-13b")
    assert gqa.kv_bytes_per_token() == 131_072 and mha.kv_bytes_per_token() == 819_200

    def kv(shape, engine):
        return SpecLatencyModel(H100, shape, IDEAL[engine], engine=engine).decode_kv_bytes(32, 512)

    # paged attention reads the grouped heads once: 16,384 x 131,072 = 2,147,483,648 B (2 GiB); no copies.
    assert kv(gqa, "paged") == (0.0, 2_147_483_648)
    # eager: torch.cat reads and rewrites the cache (2 passes), SDPA reads it once (enable_gqa, no expansion).
    assert kv(gqa, "eager") == (4_294_967_296, 2_147_483_648)
    # repeat_kv: read the cache once more and write it 32/8 = 4 times, attention reads the expanded 4 x 2 GiB.
    assert kv(gqa, "eager-repeat-kv") == (2 * 2**31 + 2**31 + 4 * 2**31, 4 * 2**31)
    # MHA has nothing to expand: 16,384 x 819,200 = 13,421,772,800 B read, the same in both eager modes.
    assert kv(mha, "paged") == (0.0, 13_421_772_800)
    assert kv(mha, "eager-repeat-kv") == kv(mha, "eager") == (26_843_545_600, 13_421_772_800)
    # At the datasheet peak (3.35 TB/s, 989 TFLOP/s): 2 GiB take 0.6410 ms, next to 4*32*4096*16384 FLOPs = 8.7 us;
    # the 13B cache takes 4.0065 ms (13.6 us of FLOPs): attention costs 6.25x, not the 1.56x of its query heads.
    t_gqa = SpecLatencyModel(H100, gqa, IDEAL["paged"], engine="paged").terms(0, 0.0, 32, 16384.0)["decode_attention"]
    t_mha = SpecLatencyModel(H100, mha, IDEAL["paged"], engine="paged").terms(0, 0.0, 32, 16384.0)["decode_attention"]
    assert t_gqa == pytest.approx(0.64110, rel=1e-4) and t_mha == pytest.approx(4.00652, rel=1e-4)


def test_lm_head_vocabulary_term_worked_numbers():
    # qwen2.5-7b: hidden 3,584 x vocab 152,064 = 544,997,376 head weights (1.09 GB in bf16);
    # llama-8b: 4,096 x 128,256 = 525,336,576.
    qwen, llama = load_shape("qwen2.5-7b"), load_shape("llama-8b")
    assert qwen.lm_head_params == 544_997_376 and llama.lm_head_params == 525_336_576
    # Decode at batch 256, paged, at peak: qwen reads 1,089,994,752 B (0.32537 ms) and does
    # 256 x 2 x 544,997,376 = 2.79e11 FLOPs (0.28213 ms): hypot = 0.43066 ms; the sampler moves
    # 256 x 152,064 logits x 12 B = 467 MB (0.13944 ms): 0.57011 ms.
    head = SpecLatencyModel(H100, qwen, IDEAL["paged"], engine="paged").terms(0, 0.0, 256, 0.0)["lm_head"]
    assert head == pytest.approx(math.hypot(0.325371, 0.282126) + 0.139443, rel=1e-4)
    assert head == pytest.approx(0.57011, rel=1e-4)
    # The same for llama-8b: hypot(0.313634, 0.271952) + 256 x 128,256 x 12 / 3.35e12 (0.117605) = 0.53274 ms.
    assert SpecLatencyModel(H100, llama, IDEAL["paged"], engine="paged").terms(0, 0.0, 256, 0.0)["lm_head"] == pytest.approx(0.53274, rel=1e-4)
    # Per sequence: a prefill of 16 prompts samples 16 sequences, whatever their length.
    model = SpecLatencyModel(H100, qwen, IDEAL["paged"], engine="paged")
    assert model.terms(16 * 2048, 0.0, 0, 0.0, 16)["lm_head"] == model.terms(16 * 128, 0.0, 0, 0.0, 16)["lm_head"]


def test_a_calibration_carries_its_attention_kernel_only_to_its_engine():
    eager = replace(IDEAL["eager"], attention_memory_eff=0.2)
    assert SpecLatencyModel(H100, load_shape("llama-8b"), eager, engine="eager-repeat-kv").attention_memory_eff == 0.2  # same SDPA kernel
    assert SpecLatencyModel(H100, load_shape("llama-8b"), eager, engine="paged").attention_memory_eff == get_engine("paged").attention_memory_eff


def test_paged_engine_is_faster_than_eager_and_graphs_have_no_host_floor():
    paged, eager = (default_latency_model("H100", "llama-8b", "wall", engine=e) for e in ("paged", "eager"))
    for batch in (1, 32, 256):
        assert paged.decode_ms(batch, 2048) < eager.decode_ms(batch, 2048)
    assert paged.terms(0, 0.0, 1, 512.0)["host_floor"] == 0.0
    assert eager.decode_ms(1, 512) == pytest.approx(eager.terms(0, 0.0, 1, 512.0)["host_floor"])  # eager small batch: host-bound


# --------------------------------------------------------------- calibration
def _synthetic(gpu_name: str, shape_name: str, params: CalibrationParams) -> MeasuredProfile:
    model = SpecLatencyModel(get_gpu(gpu_name), load_shape(shape_name), params, engine=params.engine)
    wall = SpecLatencyModel(get_gpu(gpu_name), load_shape(shape_name), params, engine=params.engine, timing="wall")
    points = [ProfilePoint("prefill", b, n, model.prefill_ms(b, n), wall.prefill_ms(b, n)) for b in (1, 4, 16) for n in (128, 512, 2048, 4096)]
    points += [ProfilePoint("decode", b, c, model.decode_ms(b, c), wall.decode_ms(b, c)) for b in (1, 8, 32, 64, 128, 256) for c in (512, 2048)]
    return MeasuredProfile(shape_name, gpu_name, load_shape(shape_name), tuple(points), f"{gpu_name}_{shape_name}.json", params.engine)


def test_joint_calibration_recovers_known_parameters():
    truth = CalibrationParams(0.55, 0.7, 0.3, 0.2, 3.0, 40.0, engine="eager")
    profiles = [_synthetic("H100", "llama-1b", truth), _synthetic("A100", "llama-8b", truth)]
    fitted = calibrate(profiles, model_error=1e-4)  # exact data: trust them over the priors
    for name in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "kernel_us", "host_kernel_us"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.01), name
    assert fitted.fit["profiles"]["H100_llama-1b.json"]["kernel"]["decode"] < 0.001
    # with the default weight the priors pull weakly identified parameters, yet the points stay fitted
    fitted = calibrate(profiles)
    assert max(v for p in fitted.fit["profiles"].values() for v in p["kernel"].values()) < 0.03


def test_calibration_rejects_mixed_engines_and_unknown_gpus():
    eager, paged = _synthetic("H100", "llama-1b", IDEAL["eager"]), _synthetic("H100", "llama-1b", IDEAL["paged"])
    with pytest.raises(ValueError, match="one engine at a time"):
        calibrate([eager, paged])
    with pytest.raises(ValueError, match="H100_llama-1b.json: unknown GPU 'TPU v5'"):
        calibrate([replace(eager, gpu="TPU v5")])


def test_shipped_calibration_is_the_joint_fit_of_the_shared_profiles(shared_profiles):
    shipped, refit = default_calibration(), calibrate(shared_profiles)
    for name in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "kernel_us", "host_kernel_us"):
        assert getattr(refit, name) == pytest.approx(getattr(shipped, name), rel=1e-4), name
    assert shipped.engine == "eager" and shipped.fit["model_error"] == MODEL_ERROR


#: The stated bound: MAPE per phase on a profile the calibration did not include (kernel timing).
HELD_OUT_BOUND = 0.10


def test_leave_one_profile_out_is_within_the_stated_bound(shared_profiles):
    rounds = leave_one_out(shared_profiles)
    assert {r.profile.name for r in rounds} == {"h100_llama-1b.json", "h100_llama-8b.json"}
    for r in rounds:
        assert set(r.kernel.mape) == {"prefill", "decode"}
        assert max(r.kernel.mape.values()) <= HELD_OUT_BOUND, (r.profile.name, r.kernel.mape)
        assert r.profile.name not in r.params.source  # really held out


def test_issue_13b_mha_point_is_predicted_from_the_shared_profiles():
    # The issue reports, for a 13B MHA shape (HF eager, bf16, H100) at batch 32 and 512 tokens of
    # context, 58 ms measured where the previous model predicted 25 ms. That profile is not here;
    # the KV-cache term by KV heads is what carries the 1B/8B calibration to it.
    predicted = default_latency_model("H100", "llama-13b", "kernel", engine="eager").decode_ms(32, 512)
    assert predicted == pytest.approx(58.0, rel=0.10)


def test_load_calibration_takes_nothing_a_file_or_profiles(tmp_path, h100_profile):
    assert load_calibration() == default_calibration()
    path = tmp_path / "c.json"
    path.write_text(replace(default_calibration(), memory_eff=0.5).to_json())
    assert load_calibration([path]).memory_eff == 0.5
    assert load_calibration([h100_profile]).source.startswith("calibrated on h100_llama-1b.json")
    with pytest.raises(ValueError, match="mix of calibration files and measured profiles"):
        load_calibration([path, h100_profile])


# --------------------------------------------------------------- CLI
def test_cli_predict_json_with_terms():
    result = runner.invoke(app, ["profile", "predict", "--gpu", "H100", "--model", "llama-8b", "--phase", "decode", "--batch", "32", "--tokens", "2048", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["iteration_ms"] == pytest.approx(default_latency_model("H100", "llama-8b").decode_ms(32, 2048))
    assert out["engine"] == "paged" and out["terms_ms"]["decode_attention"] > 0
    slower = json.loads(runner.invoke(app, ["profile", "predict", "--gpu", "L4", "--model", "llama-8b", "--phase", "decode", "--batch", "32", "--tokens", "2048", "--json"]).stdout)
    assert slower["iteration_ms"] > out["iteration_ms"]
    bad = runner.invoke(app, ["profile", "predict", "--gpu", "X1", "--phase", "decode"])
    assert bad.exit_code == 2 and "unknown GPU" in bad.output
    bad = runner.invoke(app, ["profile", "predict", "--engine", "tgi"])
    assert bad.exit_code == 2 and "unknown engine 'tgi'" in bad.output


def test_cli_fit_then_check_with_several_profiles(tmp_path, shared_profiles):
    one, eight = (p.source for p in shared_profiles)
    out = tmp_path / "calib.json"
    fitted = runner.invoke(app, ["profile", "fit", "--profile", one, "--profile", eight, "--out", str(out)])
    assert fitted.exit_code == 0, fitted.output
    assert CalibrationParams.load(out).source.endswith("h100_llama-8b.json (21 points)")
    # calibrate on the 1B profile only, predict the 8B one
    check = runner.invoke(app, ["profile", "check", "--calibration", one, "--against", eight, "--json"])
    assert check.exit_code == 0, check.output
    result = json.loads(check.stdout)
    assert len(result["points"]) == 21 and set(result["worst"]) == {"prefill", "decode"}
    assert max(result["mape"].values()) <= HELD_OUT_BOUND
    # the written calibration is accepted as it is
    check = runner.invoke(app, ["profile", "check", "--calibration", str(out), "--against", eight, "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["calibration"].startswith("calibrated on h100_llama-1b.json")
    bad = runner.invoke(app, ["profile", "check", "--calibration", str(tmp_path / "nope.json"), "--against", eight])
    assert bad.exit_code == 2 and "nope.json: cannot read" in bad.output


# --------------------------------------------------------------- kis profile measure (no GPU here: what runs without one)
def test_measure_engine_choice_and_output_paths(monkeypatch, tmp_path):
    from simulator.profiles import measure

    monkeypatch.setattr(measure, "vllm_available", lambda: False)
    assert measure.resolve_engines("auto") == ("eager",)
    with pytest.raises(ValueError, match="--engine vllm needs vllm installed"):
        measure.resolve_engines("both")
    with pytest.raises(ValueError, match="--engine must be eager, vllm, both or auto"):
        measure.resolve_engines("tgi")
    monkeypatch.setattr(measure, "vllm_available", lambda: True)
    assert measure.resolve_engines("auto") == ("eager", "vllm") and measure.resolve_engines("vllm") == ("vllm",)
    out = tmp_path / "h200_llama-8b.json"
    assert measure.output_paths(out, ("eager",)) == {"eager": out}
    assert measure.output_paths(out, ("eager", "vllm")) == {"eager": tmp_path / "h200_llama-8b_eager.json", "vllm": tmp_path / "h200_llama-8b_vllm.json"}


def test_measured_profiles_record_engine_and_software_versions(tmp_path):
    import importlib.metadata
    import platform

    from simulator.profiles.measure import profile_document, software_versions

    versions = software_versions()
    assert versions["python"] == platform.python_version() and versions["torch"] == importlib.metadata.version("torch")
    assert "vllm" not in versions  # not installed here: not invented
    shape = load_shape("llama-1b")
    document = profile_document(shape, "NVIDIA H200", "vllm", [{"batch": 1, "prompt_len": 128, "wall_ms": 3.0, "kernel_ms": 2.5}],
                                [{"batch": 8, "context_len": 512, "wall_ms": 2.0, "kernel_ms": 1.9}], versions | {"vllm": "0.11.0", "driver": "580.1"})
    path = tmp_path / "p.json"
    path.write_text(json.dumps(document))
    profile = load_profile(path)
    assert (profile.engine, profile.spec().name, profile.shape) == ("paged", "H200", shape)
    assert dict(profile.software)["vllm"] == "0.11.0" and dict(profile.software)["driver"] == "580.1"


def test_cli_measure_fails_clearly_without_gpu(tmp_path):
    result = runner.invoke(app, ["profile", "measure", "--model", "llama-1b", "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "needs transformers" in result.output or "needs a CUDA GPU" in result.output or "needs torch" in result.output
    assert runner.invoke(app, ["profile", "measure", "--out", str(tmp_path / "p.json"), "--batches", "1,x"]).exit_code == 2
    result = runner.invoke(app, ["profile", "measure", "--out", str(tmp_path / "p.json"), "--engine", "vllm"])
    assert result.exit_code == 2 and "--engine vllm needs vllm installed" in result.output
    result = runner.invoke(app, ["profile", "measure", "--model", "gpt-9", "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 2 and "unknown model 'gpt-9'" in result.output
    assert not (tmp_path / "p.json").exists()
