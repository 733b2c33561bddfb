"""The load generator replays a workload against the stub: every request accounted for."""

from __future__ import annotations

import asyncio
import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from controller.server import run_server_in_thread
from simulator.cli.main import app
from simulator.loadgen.replay import replay, summarize_results, write_results_csv
from simulator.stub.app import StubConfig, create_app
from simulator.workloads.workload import Workload


@pytest.fixture(scope="module")
def stub():
    handle = run_server_in_thread(create_app(StubConfig(time_scale=0.2, max_waiting=2, max_num_seqs=4)), port=0, lifespan="on")
    yield handle
    handle.stop()


def small_workload(n=30, gap=0.02, output=20):
    return Workload(np.arange(n) * gap, np.full(n, 300), np.full(n, output), n * gap + 1, "small")


def test_replay_accounts_for_every_request(stub, tmp_path):
    workload = small_workload(gap=0.0, output=200)  # 30 at once
    results = asyncio.run(replay(stub.url, workload, concurrency_limit=64))
    assert [r.index for r in results] == list(range(len(workload)))
    ok = [r for r in results if r.ok]
    refused = [r for r in results if r.status == 429]
    assert len(ok) + len(refused) == len(workload) and ok and refused  # 4 running + 2 waiting; bursts overflow
    assert all(r.tokens_received == 200 and 0 < r.ttft_s <= r.e2e_s for r in ok)
    summary = summarize_results(results)
    assert summary["requests"] == 30 and summary["ok"] == len(ok) and summary["errors"] == {"429": len(refused)}
    rows = list(csv.DictReader(write_results_csv(results, tmp_path / "r.csv").open()))
    assert len(rows) == 30 and sum(1 for r in rows if r["status"] == "200") == len(ok)
    assert summary["ttft_p50_s"] == pytest.approx(float(np.percentile([r.ttft_s for r in ok], 50)))


def test_open_loop_schedule_is_kept(stub):
    workload = small_workload(n=5, gap=0.2)
    results = asyncio.run(replay(stub.url, workload, speedup=2.0))
    sent = [r.sent_s for r in results]
    assert all(abs(s - 0.1 * i) < 0.08 for i, s in enumerate(sent))  # arrivals 0.2 s apart, two times faster


def test_cli_run_json(stub, tmp_path):
    result = CliRunner().invoke(app, ["loadgen", "run", "--url", stub.url, "--workload", "spike", "--duration", "20", "--rate-scale", "0.1",
                                      "--speedup", "10", "--out", str(tmp_path / "l.csv"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requests"] > 0 and (tmp_path / "l.csv").exists()


def test_without_keepalive_every_request_opens_its_own_connection():
    """Behind a Service, kube-proxy balances connections: --no-keepalive spreads requests over replicas that appear later."""
    app_ = create_app(StubConfig(time_scale=0.05))
    ports: list[int] = []

    @app_.middleware("http")
    async def remember(request, call_next):  # the client's port names the connection
        if request.url.path.startswith("/v1/"):
            ports.append(request.client.port)
        return await call_next(request)

    handle = run_server_in_thread(app_, port=0, lifespan="on")
    try:
        workload = small_workload(n=12, gap=0.05, output=4)
        assert all(r.ok for r in asyncio.run(replay(handle.url, workload, keepalive=False)))
        assert len(ports) == 12 and len(set(ports)) == 12
        ports.clear()
        assert all(r.ok for r in asyncio.run(replay(handle.url, workload)))
        assert len(set(ports)) < 12  # with keep-alive, sequential requests reuse connections
    finally:
        handle.stop()
