"""Reproduce the RL load-balancing experiment in KISim and report our numbers beside the published ones.

    .venv/bin/python bench/lb_experiment.py [--steps 40000] [--seeds 3] [--out bench/results/lb_experiment.md]

PPO, A2C and DQN (MLP 128x128, learning rate 3e-4, gamma 0.99) are trained
on the nominal homogeneous setting and on the high-load heterogeneous one
(3,000/5,000/7,000 tokens/s, concurrency 3/5/7); the heterogeneous agents are
also evaluated on the bursty and Azure-trace scenarios (same servers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np

from simulator.lb.experiment import ALGOS, BASELINES, RouterResult, baseline_chooser, make_env, model_chooser, run_episode, scenarios, train_agent
from simulator.lb.report import write_lb_report

PUBLISHED = ("Published (PPO router on a simulated heterogeneous LLM cluster): nominal load, mean response ~0.85 s (RL) vs ~1.5 s (round robin); "
             "high load, 3,000/5,000/7,000 tokens/s with concurrency 3/5/7: ~1.15 s and ~12% SLO violations (> 2 s) for RL vs 40-60% for the heuristics.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lb_experiment.md"))
    args = parser.parse_args()
    known = scenarios(1000)
    runs = Path("runs/lb")
    started = time.perf_counter()
    agents: dict[str, dict[str, object]] = {"nominal": {}, "high-load-hetero": {}}
    train_seconds = {}
    for setting in agents:
        for algo in ALGOS:
            t0 = time.perf_counter()
            agents[setting][algo] = train_agent(algo, known[setting], args.steps, seed=0, out=runs)
            train_seconds[f"{algo}-{setting}"] = time.perf_counter() - t0
    results = []
    for name, scenario in known.items():
        trained = agents["nominal" if name == "nominal" else "high-load-hetero"]
        choosers = {b: (lambda s, b=b: baseline_chooser(b, s)) for b in BASELINES} | {a: (lambda s, m=m: model_chooser(m)) for a, m in trained.items()}
        for router, factory in choosers.items():
            episodes = [run_episode(make_env(scenario), factory(seed), 1000 + seed, router, name) for seed in range(args.seeds)]
            results.append(RouterResult(router, name, float(np.mean([e.reward for e in episodes])), float(np.mean([e.mean_response_s for e in episodes])),
                                        float(np.mean([e.p95_response_s for e in episodes])), float(np.mean([e.mean_queue for e in episodes])),
                                        float(np.mean([e.slo_violation_rate for e in episodes])), episodes[0].per_server, episodes[0].response_times))
    curves = {p.stem.replace(".monitor", ""): p for p in sorted(runs.glob("*.monitor.csv"))}
    notes = (f"Command: `.venv/bin/python bench/lb_experiment.py --steps {args.steps} --seeds {args.seeds}`  \n"
             f"Date: {dt.date.today().isoformat()}; {args.steps:,} training steps per agent; {args.seeds} evaluation episodes of 1,000 requests per router and scenario.  \n"
             f"Training seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in train_seconds.items()) + f"; total {time.perf_counter() - started:.0f} s.\n\n{PUBLISHED}")
    report = write_lb_report(results, args.out.parent / "lb", curves, notes)
    args.out.write_text(report.read_text().replace("](", "](lb/"))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
