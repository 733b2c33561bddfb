"""Training at scale on this machine: DummyVecEnv vs SubprocVecEnv, and several runs at once.

1. PPO on the shipped default's training config (configs/train/ppo.yaml: 8
   environments) for a fixed number of steps, its environments stepped in the
   trainer's process (``vec_env: dummy``) or one process each (``subproc``):
   training steps per second, whole runs (environment and updates).
2. Several training runs (seeds) one after another, then at once on a process
   pool of ``--workers``: wall time and speed-up.

Rounds alternate the variants; the tables quote medians.

    .venv/bin/python bench/train_scale.py [--steps 4096] [--runs 2] [--workers 2] [--rounds 2] [--out bench/results/train_scale.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from simulator.executor import ProcessExecutor, SerialExecutor
from simulator.training.config import load_train_config
from simulator.training.runs import plan_runs, train_many

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "ppo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_scale.md"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    base = load_train_config(CONFIG, {"total_steps": args.steps, "eval": {"every_steps": 10**9, "episodes": 1}})
    scratch = Path(tempfile.mkdtemp(prefix="kis-train-bench-"))
    vec: dict[str, list[float]] = {"dummy": [], "subproc": []}
    grid: dict[str, list[float]] = {"one after another": [], f"process pool ({args.workers})": []}
    try:
        for round_ in range(args.rounds):
            for kind in vec:
                config = base.model_copy(update={"vec_env": kind})
                spec = plan_runs(config, [base.seed], [], scratch / f"vec-{kind}-{round_}")
                t0 = time.perf_counter()
                (outcome,) = train_many(spec, SerialExecutor())
                assert outcome.ok, outcome.failure
                vec[kind].append(args.steps / (time.perf_counter() - t0))
                print(f"round {round_ + 1}: {kind}: {vec[kind][-1]:,.0f} steps/s", flush=True)
            for name, executor in zip(grid, (SerialExecutor(), ProcessExecutor(args.workers))):
                specs = plan_runs(base, list(range(args.runs)), [], scratch / f"grid-{round_}-{len(grid[name])}-{name[:3]}")
                t0 = time.perf_counter()
                outcomes = train_many(specs, executor)
                assert all(o.ok for o in outcomes), [o.failure for o in outcomes]
                grid[name].append(time.perf_counter() - t0)
                print(f"round {round_ + 1}: {args.runs} runs {name}: {grid[name][-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    serial = statistics.median(grid["one after another"])
    vec_rows = "\n".join(f"| {kind} | {statistics.median(v):,.0f} | {min(v):,.0f} / {max(v):,.0f} |" for kind, v in vec.items())
    grid_rows = "\n".join(f"| {name} | {statistics.median(w):.1f} s | {serial / statistics.median(w):.2f}x |" for name, w in grid.items())
    text = f"""# Training at scale

Command: `.venv/bin/python bench/train_scale.py --steps {args.steps} --runs {args.runs} --workers {args.workers} --rounds {args.rounds}`
Date: {dt.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};
load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other work was running on the machine when > 0.5).

PPO, `configs/train/ppo.yaml` ({base.n_envs} environments, {base.env.episode_duration_s / 60:.0f}-minute episodes), {args.steps:,} steps per run,
periodic evaluation off; whole runs (environment steps, updates, export).

## Vectorised environments

| vec_env | training steps/s (median of {args.rounds}) | min / max |
|---|---:|---:|
{vec_rows}

## {args.runs} runs (seeds 0..{args.runs - 1})

| how | wall time (median of {args.rounds}) | speed-up |
|---|---:|---:|
{grid_rows}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
