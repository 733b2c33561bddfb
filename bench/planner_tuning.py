"""The planner's knobs on the training distribution, against the oracle: why its defaults are what they are.

The policy benchmark (bench/policy_benchmark.py) sweeps each rule per workload,
which is tuning on the test set; a default has to be chosen without it. Here
every variant runs on held-out episodes of the randomised training traffic
(configs/train/ppo.yaml: rates 0.25 to 55 req/s, prompts 64 to 8k tokens,
H100/A100/L4, cold starts 30 s to 10 min; never the benchmark's traces or
patterns), drawn by the training environment and run through the evaluation's decide() step (the
controller's policies and guardrails); each episode's clairvoyant oracle sets the reference. Per
variant: SLO attainment (mean and worst episode), the share of episodes that
reach 99% where the oracle does, and cost relative to the oracle's.

    .venv/bin/python bench/planner_tuning.py [--episodes 64] [--workers N | --ray auto]
    .venv/bin/python bench/planner_tuning.py --artifacts DIR[,DIR] --out out/learned.md   # learned policies instead

It writes ``bench/results/planner_tuning.md`` and ``planner_tuning.png``. With ``--artifacts`` the rows are the
default planner and each learned policy. Attainment counts every request, as the benchmark's does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from simulator.executor import make_executor  # noqa: E402
from simulator.training.config import TrainConfig, load_train_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"
CONFIG = REPO / "configs" / "train" / "ppo.yaml"
#: Episode seeds start here: not the seeds training resets with (7 to 14, then their streams) nor its evaluation (10,007).
FIRST_SEED = 5000
#: A variant named ``artifact:FOLDER`` is that learned policy (``--artifacts``).
ARTIFACT = "artifact:"
#: The variants: a name and the PlannerPolicy fields that differ from the defaults.
VARIANTS: dict[str, dict[str, float | None]] = {
    "default": {},
    "u 0.65": {"target_utilization": 0.65},
    "u 1.0": {"target_utilization": 1.0},
    "u 1.25": {"target_utilization": 1.25},
    "z 0": {"burst_z": 0.0},
    "z 2": {"burst_z": 2.0},
    "no peak hold": {"peak_hold_s": None},
    "hold 300 s": {"peak_hold_s": 300.0},
    "hold 1200 s": {"peak_hold_s": 1200.0},
    "u 1.0, z 0": {"target_utilization": 1.0, "burst_z": 0.0},
    "no feedback": {"feedback_down": 1.0},
}


def run_episode(config: TrainConfig, cell: tuple[int, str | None]) -> tuple[float, float]:
    """(SLO attainment, cost in USD) of one episode: the oracle's (variant ``None``), a planner variant's, or a
    learned policy's (variant ``artifact:FOLDER``). The environment only draws the episode (traffic, GPU, cold
    start, initial fleet); every policy then runs through the evaluation's decision step, as in the benchmark."""
    from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider
    from simulator.runner import simulate
    from simulator.training.envs import make_env

    seed, variant = cell
    env = make_env(config)
    env.reset(seed=seed)
    episode, pools = env.episode_config, env._pools(env.episode_config)
    if variant is None:
        from simulator.evaluation.oracle import oracle

        result = oracle(env.workload, episode, pools, slo=env.slo, interval_s=env.interval_s, min_replicas=env.min_replicas,
                        max_replicas=env.max_replicas, seed=seed, iterations=7).result
    else:
        spec = ({"type": "learned", "artifact": variant[len(ARTIFACT):]} if variant.startswith(ARTIFACT)
                else {"type": "planner", **VARIANTS[variant]})
        setup = EvaluationSetup(cluster=episode, slo=env.slo, interval_s=env.interval_s, min_replicas=env.min_replicas,
                                max_replicas=env.max_replicas)
        initial = env._cluster.ready_replicas
        result = simulate(env.workload, episode, replicas=initial, decide=make_decider(PolicyEntry(variant, spec), setup, pools),
                          interval_s=env.interval_s, slo=env.slo, seed=seed, keep_snapshots=False, pools=pools)
    summary = result.summary()
    return summary["slo_attainment"], summary["cost_usd"]


def summarise(oracle: np.ndarray, runs: np.ndarray) -> dict[str, float]:
    """``oracle`` and ``runs``: (episodes, 2) arrays of (attainment, cost)."""
    reached = (runs[:, 0] >= 0.99) | (oracle[:, 0] < 0.99)
    ratio = runs[:, 1] / oracle[:, 1]
    return {"mean_attainment": float(runs[:, 0].mean()), "worst_attainment": float(runs[:, 0].min()),
            "reaches_99_where_oracle": float(reached.mean()), "cost_over_oracle_mean": float(ratio.mean()),
            "cost_over_oracle_median": float(np.median(ratio))}


def plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """Two bar panels, a row per variant (cheapest first): cost over the oracle's, and episodes at 99%."""
    names = sorted(rows, key=lambda n: rows[n]["cost_over_oracle_mean"])
    colors = ["C3" if n == "default" else "C0" for n in names]
    fig, (cost, reach) = plt.subplots(1, 2, figsize=(8.0, 0.32 * len(names) + 1.4), sharey=True)
    cost.barh(names, [rows[n]["cost_over_oracle_mean"] for n in names], color=colors)
    cost.set_xlim(1.0, None)
    cost.set_xlabel("cost / oracle's (mean over episodes)")
    reach.barh(names, [100 * rows[n]["reaches_99_where_oracle"] for n in names], color=colors)
    reach.set_xlim(80, 100)
    reach.set_xlabel("episodes at 99% where the oracle is (%)")
    cost.invert_yaxis()
    for ax in (cost, reach):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Planner variants on held-out training traffic (red: the default)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(rows: dict[str, dict[str, float]], args: argparse.Namespace, oracle: np.ndarray, seconds: float, executor: str) -> str:
    config = args.config.resolve()
    shown = str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(args.config)
    lines = [
        "# Planner tuning on the training distribution",
        "",
        f"Command: `.venv/bin/python bench/planner_tuning.py --episodes {args.episodes}"
        f"{'' if args.config == CONFIG else f' --config {shown}'}{f' --artifacts {args.artifacts}' if args.artifacts else ''}`  ",
        f"Date: {dt.date.today().isoformat()}; episodes: seeds {FIRST_SEED}..{FIRST_SEED + args.episodes - 1} of "
        f"{shown}'s randomised traffic (1 h each); {executor}; wall time {seconds:.0f} s.",
        f"The oracle reaches 99% on {100 * float((oracle[:, 0] >= 0.99).mean()):.0f}% of the episodes (mean attainment "
        f"{100 * float(oracle[:, 0].mean()):.2f}%; some episodes need more than 32 replicas at their peak).",
        "",
        "*default*: `PlannerPolicy()` (u 0.8, z 1, a 600 s peak hold, latency feedback on). u: `target_utilization` "
        "(the headroom knob); z: `burst_z` (standing capacity for recent bursts, in standard deviations of the recent "
        "demand); hold: `peak_hold_s` (the recent peak a scale-down must fit); *no feedback*: the latency correction off.",
        "",
        "| variant | mean attainment | worst episode | 99% where oracle | cost / oracle (mean) | (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {100 * r['mean_attainment']:.2f}% | {100 * r['worst_attainment']:.2f}% | "
                     f"{100 * r['reaches_99_where_oracle']:.1f}% | {r['cost_over_oracle_mean']:.2f}x | {r['cost_over_oracle_median']:.2f}x |")
    lines += ["", f"![variants]({args.out.with_suffix('.png').name})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--config", type=Path, default=CONFIG, help="the training config whose randomised traffic "
                        "draws the episodes (default: configs/train/ppo.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--ray", default=None, help="run on Ray: auto, or ray://HOST:10001")
    parser.add_argument("--artifacts", default=None, help="learned policies (artifact folders, comma-separated) to run "
                        "beside the default planner instead of the planner variants")
    parser.add_argument("--out", type=Path, default=OUT / "planner_tuning.md")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    config = load_train_config(args.config)
    seeds = range(FIRST_SEED, FIRST_SEED + args.episodes)
    variants = ["default", *(ARTIFACT + a for a in args.artifacts.split(","))] if args.artifacts else list(VARIANTS)
    cells = [(s, None) for s in seeds] + [(s, v) for v in variants for s in seeds]
    done = [0]
    started = time.perf_counter()

    def progress(_outcome) -> None:
        done[0] += 1
        if done[0] % 50 == 0 or done[0] == len(cells):
            print(f"  {done[0]}/{len(cells)} episodes ({time.perf_counter() - started:.0f} s)", flush=True)

    with make_executor(args.workers, args.ray) as executor:
        outcomes = executor.map(run_episode, config, cells, labels=[f"seed {s}, {v or 'oracle'}" for s, v in cells], on_done=progress)
        described = "serial" if executor.name == "serial" else f"{executor.name} with {getattr(executor, 'workers', '?')} workers"
    failed = [o.failure for o in outcomes if not o.ok]
    if failed:
        raise SystemExit("error: " + "; ".join(str(f) for f in failed[:3]))
    values = np.array([o.value for o in outcomes])
    n = len(seeds)
    oracle = values[:n]
    rows = {name.removeprefix(ARTIFACT): summarise(oracle, values[n * (i + 1): n * (i + 2)]) for i, name in enumerate(variants)}
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out.with_suffix(".png"))
    text = report(rows, args, oracle, seconds, described)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"episodes": n, "rows": rows}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
