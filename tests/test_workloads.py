"""Workload readers, patterns, synthetic load, transforms and statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.cli.main import app
from simulator.workloads import WorkloadError, make_workload, read_trace
from simulator.workloads.ops import compress, per_minute, scale_rate, window, write_per_minute_csv, write_requests_csv
from simulator.workloads.patterns import PatternSpec, generate_pattern, rate_function
from simulator.workloads.stats import workload_stats

runner = CliRunner()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- readers
def test_azure_trace_matches_its_readme(azure_conv):
    result = read_trace(azure_conv, "azure")
    w = result.workload
    assert len(w) == 19_366 and result.skipped == 0
    stats = workload_stats(w)
    assert stats["mean_rate_rps"] == pytest.approx(5.530, abs=0.001)
    assert stats["peak_minute_requests"] == 507
    assert stats["prompt_p50"] == 1020 and stats["output_p99"] == 601
    assert w.start_time_of_day_s == pytest.approx(18 * 3600 + 15 * 60 + 46.68, abs=0.01)


def test_burstgpt_reader_and_failed_requests(tmp_path):
    path = write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                 "5,ChatGPT,100,20,120,Conversation log\n7.5,GPT-4,300,0,300,Conversation log\n9,ChatGPT,50,10,60,API log\n")
    with pytest.raises(WorkloadError, match=r"b\.csv:3: column 'Response tokens': zero tokens"):
        read_trace(path, "burstgpt")
    result = read_trace(path, "burstgpt", skip_bad_rows=True)
    assert result.skipped == 1 and result.workload.arrival_s.tolist() == [0.0, 4.0]
    assert result.workload.prompt_tokens.tolist() == [100, 50]


def test_mooncake_jsonl_in_milliseconds(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"timestamp": 1000, "input_length": 10, "output_length": 3}\n'
                 '{"timestamp": 3500, "input_length": 20, "output_length": 4, "hash_ids": [1]}\n')
    w = read_trace(path, "mooncake").workload
    assert w.arrival_s.tolist() == [0.0, 2.5] and w.output_tokens.tolist() == [3, 4]


def test_generic_csv_and_jsonl_with_mapping(tmp_path):
    csv_path = write(tmp_path, "g.csv", "t_us,in,out\n1000000,5,6\n3000000,7,8\n")
    w = read_trace(csv_path, "generic:time=t_us,prompt=in,output=out,unit=us").workload
    assert w.arrival_s.tolist() == [0.0, 2.0]
    jsonl = write(tmp_path, "g.jsonl", '{"ts": 10, "p": 1, "o": 2}\n{"ts": 11, "p": 3, "o": 4}\n')
    assert read_trace(jsonl, "generic:time=ts,prompt=p,output=o").workload.prompt_tokens.tolist() == [1, 3]
    with pytest.raises(WorkloadError, match="generic format needs"):
        read_trace(csv_path, "generic:time=t_us")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.1,5\n", r"x\.csv:1: missing column\(s\) 'GeneratedTokens'; found 'TIMESTAMP', 'ContextTokens'"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.1,five,3\n", r"x\.csv:2: column 'ContextTokens': .*five"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,5,3\n", r"x\.csv:2: column 'TIMESTAMP'"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:05,5,3\n2023-11-16 18:17:04,5,3\n", r"x\.csv:3: column 'TIMESTAMP': timestamp goes backwards"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:05,-5,3\n", r"x\.csv:2: column 'ContextTokens': negative token count -5"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", r"x\.csv: no usable rows"),
    ],
)
def test_malformed_rows_name_file_line_and_column(tmp_path, body, message):
    with pytest.raises(WorkloadError, match=message):
        read_trace(write(tmp_path, "x.csv", body), "azure")


def test_skip_bad_rows_counts_them(tmp_path):
    body = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:05,5,3\nbad,1,1\n2023-11-16 18:17:06,-1,3\n2023-11-16 18:17:07,4,2\n"
    result = read_trace(write(tmp_path, "x.csv", body), "azure", skip_bad_rows=True)
    assert result.skipped == 2 and len(result.workload) == 2 and len(result.problems) == 2


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(WorkloadError, match="unknown trace format"):
        read_trace(write(tmp_path, "x.csv", "a\n1\n"), "parquet")
    with pytest.raises(WorkloadError, match="no such file"):
        read_trace(tmp_path / "nope.csv", "azure")


# --------------------------------------------------------------- patterns
def binned(w, width=60.0):
    return np.bincount((w.arrival_s // width).astype(int), minlength=int(np.ceil(w.duration_s / width))) / width


def test_ramp_rises_and_spike_sits_in_its_window():
    ramp = binned(make_workload("ramp", seed=1, duration_s=3600, base_rate=5, peak_rate=30))
    assert ramp[:5].mean() < 10 and ramp[-10:].mean() > 25
    assert np.corrcoef(np.arange(40), ramp[:40])[0, 1] > 0.9
    spike = make_workload("spike", seed=2, duration_s=1800, base_rate=4, peak_rate=40, spike_start_s=600, spike_length_s=300)
    rates = binned(spike)
    assert rates[10:15].mean() == pytest.approx(40, rel=0.1)
    assert np.concatenate([rates[:10], rates[15:]]).mean() == pytest.approx(4, rel=0.15)


def test_periodic_has_its_period_and_random_changes_level():
    w = make_workload("periodic", seed=3, duration_s=3600, base_rate=2, peak_rate=20, period_s=900)
    rates = binned(w, 30)
    spectrum = np.abs(np.fft.rfft(rates - rates.mean()))
    assert np.argmax(spectrum) == len(rates) * 30 // 900  # 4 cycles in the hour
    spec = PatternSpec("random", duration_s=1200, base_rate=2, peak_rate=30, change_every_s=300)
    levels = rate_function(spec, np.random.default_rng(0))(np.array([0, 301, 601, 901]))
    assert len(set(np.round(levels, 6))) == 4 and all(2 <= level <= 30 for level in levels)


def test_llm_day_has_a_daily_cycle():
    w = make_workload("llm-day", seed=4, duration_s=3600, bursts_per_hour=0, daily_amplitude=0.8, peak_hour=12)
    rates = binned(w, 300)
    assert rates[5:7].mean() > 3 * rates[:1].mean()  # noon (t=1800 s of a compressed day) vs midnight


def test_same_seed_identical_different_seed_different():
    for name in ("ramp", "periodic", "random", "spike", "llm-day"):
        a, b, c = (make_workload(name, seed=s, duration_s=600) for s in (7, 7, 8))
        assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.prompt_tokens, b.prompt_tokens)
        assert not np.array_equal(a.arrival_s[:50], c.arrival_s[:50])


def test_unknown_preset_and_parameter():
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("burst", seed=0)
    with pytest.raises(ValueError, match="no parameter"):
        make_workload("spike", seed=0, height=3)


# -------------------------------------------------------------------- ops
def test_window_compress_and_scale_rate():
    w = generate_pattern(PatternSpec("spike", duration_s=600, base_rate=10, peak_rate=10), np.random.default_rng(0))
    part = window(w, 100, 200)
    assert part.arrival_s.min() >= 0 and part.arrival_s.max() < 100 and part.duration_s == 100
    assert len(part) == np.sum((w.arrival_s >= 100) & (w.arrival_s < 200))
    fast = compress(w, 2.0)
    assert fast.duration_s == 300 and fast.mean_rate == pytest.approx(2 * w.mean_rate)
    rng = np.random.default_rng(1)
    assert len(scale_rate(w, 0.5, rng)) == pytest.approx(len(w) / 2, rel=0.1)
    doubled = scale_rate(w, 2.5, rng)
    assert len(doubled) == pytest.approx(2.5 * len(w), rel=0.05) and np.all(np.diff(doubled.arrival_s) >= 0)


def test_per_minute_aggregates_and_round_trip(tmp_path):
    w = make_workload("spike", seed=5, duration_s=300)
    rows = per_minute(w)
    assert rows["requests"].sum() == len(w) and rows["prompt_tokens"].sum() == w.prompt_tokens.sum()
    text = write_per_minute_csv(w, tmp_path / "m.csv").read_text().splitlines()
    assert text[0] == "minute,requests,prompt_tokens,generated_tokens" and len(text) == 6
    back = read_trace(write_requests_csv(w, tmp_path / "r.csv"), "generic:time=arrival_s,prompt=prompt_tokens,output=output_tokens").workload
    assert np.allclose(back.arrival_s, w.arrival_s - w.arrival_s[0], atol=1e-5) and np.array_equal(back.output_tokens, w.output_tokens)


# -------------------------------------------------------------------- CLI
def test_cli_stats_json(azure_conv):
    result = runner.invoke(app, ["workload", "stats", str(azure_conv), "--format", "azure", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["rows"] == 19366 and stats["peak_minute_requests"] == 507


def test_cli_stats_reports_errors_and_skips(tmp_path):
    path = write(tmp_path, "x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:05,5,3\nbad,1,1\n")
    failed = runner.invoke(app, ["workload", "stats", str(path)])
    assert failed.exit_code == 2 and "x.csv:3" in failed.output
    skipped = runner.invoke(app, ["workload", "stats", str(path), "--skip-bad-rows", "--json"])
    assert json.loads(skipped.stdout)["skipped_rows"] == 1


def test_cli_generate(tmp_path):
    result = runner.invoke(app, ["workload", "generate", "ramp", "--duration", "300", "--out", str(tmp_path / "m.csv"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.csv").read_text().count("\n") == 6
