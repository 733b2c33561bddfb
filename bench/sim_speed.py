"""Simulation speed: the 1-hour Azure conversation trace at its native rate on
4 H100 replicas of an 8B Llama shape (target: at least 1,000x real time on
one core), and env steps per second of kis/Autoscale-v0 with a 15 s interval
at the same trace's rate (target: 2,000 steps/s), with where the time goes.

    .venv/bin/python bench/sim_speed.py [--out bench/results/sim_speed.md]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import platform
import pstats
import time
from pathlib import Path

from simulator.cluster.config import ClusterConfig, NodePool
from simulator.runner import simulate
from simulator.workloads.catalog import load_trace

TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
CONFIG = ClusterConfig(pools=(NodePool(name="h100", gpu="H100", gpus_per_node=8, initial_nodes=1, max_nodes=1),), model="llama-8b")


def time_simulation(workload, repeats: int = 3) -> tuple[float, dict]:
    best = float("inf")
    summary = {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = simulate(workload, CONFIG, replicas=4, keep_snapshots=False)
        best = min(best, time.perf_counter() - start)
        summary = result.summary()
    return best, summary


def time_env(workload, steps_cap: int = 100_000) -> tuple[float, int]:
    from simulator.envs.autoscale import AutoscaleEnv

    env = AutoscaleEnv(CONFIG, lambda rng: workload, max_replicas=8, initial_replicas=4)
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    while steps < steps_cap:
        _, _, _, truncated, _ = env.step(2)  # hold
        steps += 1
        if truncated:
            break
    return time.perf_counter() - start, steps


def profile_top(fn, n: int = 12) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(n)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join(lines[start : start + n + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/sim_speed.md"))
    args = parser.parse_args()
    workload = load_trace(TRACE, "azure")
    wall, summary = time_simulation(workload)
    speedup = workload.duration_s / wall
    env_wall, env_steps = time_env(workload)
    env_rate = env_steps / env_wall
    profile = profile_top(lambda: simulate(workload, CONFIG, replicas=4, keep_snapshots=False))
    text = f"""# Simulation speed

Command: `.venv/bin/python bench/sim_speed.py`
Date: {dt.date.today().isoformat()}; machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, one process (one core).

## Discrete-event simulation, Azure conversation trace (native rate), 4 x H100, llama-8b (kernel timing)

| metric | value | target |
|---|---:|---:|
| requests | {len(workload):,} | |
| simulated span | {workload.duration_s:,.0f} s | |
| wall time (best of 3) | {wall:.2f} s | |
| simulated seconds per wall second | {speedup:,.0f}x | >= 1,000x |
| requests per wall second | {len(workload) / wall:,.0f} | |
| SLO attainment (TTFT 500 ms, TPOT 50 ms) | {summary['slo_attainment']:.2%} | |
| TTFT p95 / TPOT p95 | {summary['ttft_p95_s'] * 1000:.0f} ms / {summary['tpot_p95_s'] * 1000:.1f} ms | |

## kis/Autoscale-v0, 15 s control interval, same trace and cluster

| metric | value | target |
|---|---:|---:|
| env steps | {env_steps:,} | |
| env steps per second | {env_rate:,.0f} | >= 2,000 |

## Where the time goes (cProfile, one simulation, top functions by own time)

```
{profile}
```
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
