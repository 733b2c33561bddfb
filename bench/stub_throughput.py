"""Requests per second the stub server sustains on loopback with zero errors.

    .venv/bin/python bench/stub_throughput.py [--out bench/results/stub_throughput.md]

The stub runs as its own process (`kis stub serve`, simulated GPU 100x faster
than real so that the server, not the simulated GPU, is the bottleneck).
Two clients: `wrk` (Debian package; closed loop, N connections, streaming
responses read to the end) measures the server; the project's own Python load
generator (open loop, constant rate) is measured too, and is itself the
bottleneck well before the server. Target: at least 500 req/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from simulator.loadgen.replay import replay, summarize_results
from simulator.workloads.workload import Workload


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "kis-stub", "prompt": "x", "stream": true, "kis": {"prompt_tokens": 128, "output_tokens": 16}}'
"""


def wrk_runs(url: str) -> list[tuple[int, float, str, int]]:
    """(connections, requests/s, mean latency, errors) for a few connection counts."""
    import re
    import tempfile

    rows = []
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    for connections in (16, 64, 128):
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d8s", "-s", script.name, f"{url}/v1/completions"],
                             capture_output=True, text=True, timeout=60).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        latency = re.search(r"Latency\s+(\S+)", out).group(1)
        errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out)) + sum(
            int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
        rows.append((connections, rps, latency, errors))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/stub_throughput.md"))
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    kis = Path(sys.executable).with_name("kis")
    server = subprocess.Popen([str(kis), "stub", "serve", "--port", str(port), "--time-scale", "0.01", "--max-waiting", "100000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for rate in (200, 400, 600, 800, 1000, 1500):
            n = int(rate * args.seconds)
            workload = Workload(np.arange(n) / rate, np.full(n, 128), np.full(n, 16), n / rate + 1, f"{rate}rps")
            start = time.perf_counter()
            results = asyncio.run(replay(url, workload, concurrency_limit=512, timeout_s=60))
            wall = time.perf_counter() - start
            summary = summarize_results(results)
            errors = len(results) - int(summary["ok"])
            rows.append((rate, len(results), errors, len(results) / wall, summary["ttft_p95_s"], summary["e2e_p95_s"]))
            if errors or len(results) / wall < 0.9 * rate:
                break  # errors, or the client no longer keeps up: higher rates measure the client
        wrk_rows = wrk_runs(url) if shutil.which("wrk") else []
    finally:
        server.terminate()
        server.wait(10)
    best = max((r for r in rows if r[2] == 0), key=lambda r: r[3], default=None)
    lines = [
        "# Stub server throughput", "",
        "Command: `.venv/bin/python bench/stub_throughput.py`  ",
        f"Date: {dt.date.today().isoformat()}; {os.cpu_count()} cores; server and load generator are separate processes on loopback; "
        "prompts 128 tokens, outputs 16 tokens, streaming; simulated GPU time scaled by 0.01.", "",
        "| offered req/s | requests | errors | achieved req/s | TTFT p95 | E2E p95 |", "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4] * 1000:.0f} ms | {r[5] * 1000:.0f} ms |" for r in rows]
    lines += ["", f"Python load generator (open loop): sustained with zero errors {best[3]:.0f} req/s; above that the client, not the server, saturates." if best else "No error-free rate."]
    if wrk_rows:
        lines += ["", "## wrk (closed loop, 8 s per row)", "", "| connections | req/s | mean latency | non-2xx or socket errors |", "|---:|---:|---:|---:|"]
        lines += [f"| {c} | {rps:.0f} | {lat} | {err} |" for c, rps, lat, err in wrk_rows]
        clean = [rps for _, rps, _, err in wrk_rows if err == 0]
        lines += ["", f"Sustained with zero errors: **{max(clean):.0f} req/s** (target: at least 500 req/s)." if clean else "wrk saw errors at every level."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
