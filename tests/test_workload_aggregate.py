"""The per-minute (aggregated) trace format: kis workload generate and kis calibrate write it, every trace reader reads it."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.cli.main import app
from simulator.workloads.aggregate import read_aggregate, write_aggregate_csv
from simulator.workloads.catalog import load_trace, make_workload
from simulator.workloads.ops import per_minute, write_per_minute_csv
from simulator.workloads.traces import WorkloadError

runner = CliRunner()


def test_bins_expand_to_their_counts_and_exact_token_totals(tmp_path):
    path = write_aggregate_csv([(0, 60, 3, 300, 31), (60, 60, 0, 0, 0), (120, 30, 2, 1001, 7)], tmp_path / "w.csv")
    workload = read_aggregate(path, seed=1).workload
    assert len(workload) == 5 and workload.duration_s == 150
    first, last = workload.arrival_s[:3], workload.arrival_s[3:]
    assert np.all((0 <= first) & (first < 60)) and np.all((120 <= last) & (last < 150))
    assert workload.prompt_tokens[:3].sum() == 300 and sorted(workload.output_tokens[:3]) == [10, 10, 11]
    assert workload.prompt_tokens[3:].sum() == 1001 and workload.output_tokens[3:].sum() == 7
    again = read_aggregate(path, seed=1).workload
    assert np.array_equal(again.arrival_s, workload.arrival_s)  # seeded
    assert not np.array_equal(read_aggregate(path, seed=2).workload.arrival_s, workload.arrival_s)


def test_kis_workload_generate_output_round_trips(tmp_path):
    original = make_workload("spike", seed=3, duration_s=600)
    path = write_per_minute_csv(original, tmp_path / "pm.csv")
    replayed = load_trace(path, "per-minute", seed=0)
    assert np.array_equal(per_minute(replayed)["requests"], per_minute(original)["requests"])
    assert replayed.prompt_tokens.sum() == original.prompt_tokens.sum() and replayed.output_tokens.sum() == original.output_tokens.sum()


@pytest.mark.parametrize(("text", "message"), [
    ("minute,requests,prompt_tokens\n0,3,30\n", "missing column\\(s\\) generated_tokens"),
    ("requests,prompt_tokens,generated_tokens\n3,30,3\n", "minute \\(or start_s and seconds\\)"),
    ("minute,requests,prompt_tokens,generated_tokens\n0,3,x,3\n", ":2: column 'prompt_tokens': not a number: 'x'"),
    ("minute,requests,prompt_tokens,generated_tokens\n0,-3,30,3\n", ":2: column 'requests': must be a finite number >= 0"),
    ("minute,requests,prompt_tokens,generated_tokens\n1,3,30,3\n0,3,30,3\n", ":3: bins must be in time order"),
    ("start_s,seconds,requests,prompt_tokens,generated_tokens\n0,0,3,30,3\n", ":2: column 'seconds': a bin with requests needs a positive length"),
    ("minute,requests,prompt_tokens,generated_tokens\n0,0,0,0\n", "no requests in 1 bin"),
])
def test_malformed_aggregates_say_what_and_where(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        read_aggregate(path)
    result = runner.invoke(app, ["simulate", "--trace", str(path), "--format", "per-minute", "--no-plots"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
