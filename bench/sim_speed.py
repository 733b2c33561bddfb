"""Simulation speed: the 1-hour Azure conversation trace at its native rate on
4 H100 replicas of an 8B Llama shape (target: at least 1,000x real time on
one core), and env steps per second of kis/Autoscale-v0 with a 15 s interval
at the same trace's rate (target: 2,000 steps/s), with where the time goes.

    .venv/bin/python bench/sim_speed.py [--out bench/results/sim_speed.md]
    .venv/bin/python bench/sim_speed.py --baseline REV [--rounds 5] [--instructions]   # env steps/s: REV's code vs this tree

``--baseline`` runs the env measurement in fresh processes on ``git archive
REV`` (simulator/ and controller/ only), on this tree from source
(``KIS_PURE_PYTHON=1``) and on this tree's compiled engine (when
``scripts/compile_engine`` has built it) in turn, ``--rounds`` times, and
reports the medians and their ratios; ``--instructions`` also counts the
instructions of two episodes under valgrind (callgrind), a figure that other
load on the machine does not move.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator import compiled
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


def time_env(workload, episodes: int = 5) -> tuple[float, int]:
    """CPU seconds and steps of the fastest of ``episodes`` episodes (reset included), after one to warm up."""
    from simulator.envs.autoscale import AutoscaleEnv

    env = AutoscaleEnv(CONFIG, lambda rng: workload, max_replicas=8, initial_replicas=4)

    def episode() -> int:
        env.reset(seed=0)
        steps = 0
        while True:
            steps += 1
            if env.step(2)[3]:  # hold, until truncated
                return steps

    episode()
    best = (float("inf"), 0)
    for _ in range(episodes):
        start = time.process_time()
        steps = episode()
        best = min(best, (time.process_time() - start, steps))
    return best


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


#: Run in a fresh process by --baseline: best env steps/s over a few episodes of the same trace and cluster.
_ENV_PROBE = """
import sys, time
from pathlib import Path
from simulator import compiled
from simulator.cluster.config import ClusterConfig, NodePool
from simulator.envs.autoscale import AutoscaleEnv
from simulator.workloads.catalog import load_trace
config = ClusterConfig(pools=(NodePool(name="h100", gpu="H100", gpus_per_node=8, initial_nodes=1, max_nodes=1),), model="llama-8b")
workload = load_trace(Path(sys.argv[1]), "azure")
env = AutoscaleEnv(config, lambda rng: workload, max_replicas=8, initial_replicas=4)
def episode():
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        if env.step(2)[3]:
            return steps
episode()
if sys.argv[2] == "instructions":
    import os, subprocess
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True)
    episode(); episode()
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True)
else:
    best = 0.0
    for _ in range(int(sys.argv[2])):
        start = time.process_time()
        steps = episode()
        best = max(best, steps / (time.process_time() - start))
    print(best)
"""


def _probe(tree: Path | None, *args: str, valgrind: bool = False, pure: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env = {k: v for k, v in env.items() if k != compiled.PURE_ENV} | ({compiled.PURE_ENV: "1"} if pure else {})
    command = [sys.executable, "-c", _ENV_PROBE, str(TRACE), *args]
    if valgrind:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null", *command]
    # The probe imports `simulator` from its working directory: the baseline's tree, or this checkout.
    done = subprocess.run(command, env=env, cwd=tree or Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def compare_with(rev: str, rounds: int, instructions: bool) -> str:
    """Env steps/s of ``rev``'s simulator against this tree's (from source, and compiled when built), in alternating fresh processes."""
    tree = Path(tempfile.mkdtemp(prefix="kis-baseline-"))
    try:
        archive = subprocess.run(["git", "archive", rev, "simulator", "controller"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        arms = {f"`{rev}`": (tree, False), "this tree, from source": (None, True)}
        if compiled.state() == "current":
            arms["this tree, compiled (mypyc)"] = (None, False)
        rates: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(rounds):
            for name, (where, pure) in arms.items():
                rates[name].append(float(_probe(where, "5", pure=pure).split()[-1]))
                print(f"{name}: {rates[name][-1]:,.0f} steps/s", flush=True)
        before = statistics.median(rates[f"`{rev}`"])
        rows = [f"| {name} | {statistics.median(r):,.0f} | {min(r):,.0f} / {max(r):,.0f} | {statistics.median(r) / before:.2f}x |"
                for name, r in rates.items()]
        text = (f"Env steps per CPU-second, best of 5 episodes per process, median over {rounds} alternating processes; "
                f"load average {os.getloadavg()[0]:.1f} at the end.\n\n| code | steps/s (median) | min / max | vs `{rev}` |\n"
                "|---|---:|---:|---:|\n" + "\n".join(rows) + "\n")
        if instructions and shutil.which("valgrind"):
            def count(where, pure):
                line = next(x for x in _probe(where, "instructions", valgrind=True, pure=pure).splitlines() if "Collected" in x)
                return int(line.split()[-1]) / 2
            counts = {name: count(where, pure) for name, (where, pure) in arms.items()}
            base = counts[f"`{rev}`"]
            text += ("\nInstructions per episode (callgrind, two episodes after a warm-up): "
                     + ", ".join(f"{name} {n / 1e9:.3f} G ({base / n:.2f}x fewer)" if n != base else f"{name} {n / 1e9:.3f} G"
                                 for name, n in counts.items()) + ".\n")
        return text
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/sim_speed.md"))
    parser.add_argument("--baseline", help="git revision to compare env steps/s with (A/B in fresh processes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="with --baseline: also count instructions under valgrind")
    args = parser.parse_args()
    comparison = compare_with(args.baseline, args.rounds, args.instructions) if args.baseline else ""
    workload = load_trace(TRACE, "azure")
    wall, summary = time_simulation(workload)
    speedup = workload.duration_s / wall
    env_wall, env_steps = time_env(workload)
    env_rate = env_steps / env_wall
    profile = profile_top(lambda: simulate(workload, CONFIG, replicas=4, keep_snapshots=False))
    text = f"""# Simulation speed

Command: `.venv/bin/python bench/sim_speed.py{" --baseline " + args.baseline + " --rounds " + str(args.rounds) + (" --instructions" if args.instructions else "") if args.baseline else ""}`
Date: {dt.date.today().isoformat()}; machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, one process (one core);
engine: {compiled.in_use()} (`scripts/compile_engine status`; the tables below the first two compare both).

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
| env steps per CPU-second (best of 5 episodes after a warm-up) | {env_rate:,.0f} | >= 2,000 |

{"## Before and after (same trace and cluster)" + chr(10) + chr(10) + comparison + chr(10) if comparison else ""}## Where the time goes (cProfile, one simulation, top functions by own time)

```
{profile}
```
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
