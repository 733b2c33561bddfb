"""Requests per second the stub server sustains on loopback with zero errors.

    .venv/bin/python bench/stub_throughput.py [--out bench/results/stub_throughput.md]

The stub runs as its own process (`kis stub serve`, simulated GPU 100x faster
than real so that the server, not the simulated GPU, is the bottleneck);
the load generator replays constant-rate bursts of short requests (16 output
tokens, streaming) at rising rates. Target: at least 500 req/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
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
            if errors:
                break
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
    lines += ["", f"Sustained with zero errors: **{best[3]:.0f} req/s** (target: at least 500 req/s)." if best else "No error-free rate."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
