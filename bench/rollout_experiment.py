"""An experiment: one step of policy iteration on the planner (rollouts), learned as residual steps.

PPO learns no residual around the planner (bench/results/train_default.md) and
imitating the clairvoyant oracle sheds replicas ahead of bursts the policy
cannot foresee (bench/results/imitation_experiment.md). This asks each state
what a deviation is worth: at every labelled step of a randomised training
episode (configs/train/ppo.yaml, never the benchmark's traces) the environment
is copied once per residual step, the copy takes that step and then follows the
planner for one cold start plus ``--lookahead-s``, and the step's cost (USD)
and avoidable SLO misses are summed. The copies share the cluster's random
state, so the steps differ only by what they do. The label for a miss weight
``w`` is the step with the lowest ``cost + w x misses``, the zero step unless
another beats it by ``--margin`` of the zero step's score (a rollout improves
on the planner only where it clearly does). A 64x64 MLP learns the label from
the ``kis-obs/2`` observation, one artifact per weight.

    .venv/bin/python bench/rollout_experiment.py --episodes 48 --out out/rollout
    .venv/bin/python bench/policy_benchmark.py --only learned --reuse bench/results/policy_benchmark.json \\
        --artifact out/rollout/w0.1 --out out/rollout/benchmark_w0.1.md

Results: bench/results/rollout_experiment.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imitation_experiment import export, fit  # noqa: E402

from simulator.executor import make_executor  # noqa: E402
from simulator.training.config import TrainConfig, load_train_config  # noqa: E402
from simulator.training.envs import make_env  # noqa: E402

#: Training episodes start at this seed (the imitation experiment used 1000 and up, planner tuning 5000 and up).
FIRST_SEED = 3000


def branch(env, action: int, zero: int, steps: int) -> tuple[float, float]:
    """Cost (USD) and avoidable misses of a copy of ``env`` that takes ``action``, then the planner's for ``steps - 1``."""
    memo = {id(env.workload): env.workload, id(env._feasible): env._feasible}
    twin = copy.deepcopy(env, memo)
    cost = misses = 0.0
    for i in range(steps):
        *_, truncated, info = twin.step(action if i == 0 else zero)
        cost, misses = cost + info["cost_usd"], misses + info["slo_misses"]
        if truncated:
            break
    return cost, misses


def rollout(shared: tuple[TrainConfig, float, int], seed: int) -> dict:
    """One episode following the planner, with every ``every``-th step's residual steps evaluated by branching."""
    config, lookahead_s, every = shared
    env = make_env(config)
    obs, _ = env.reset(seed=seed)
    zero = env.action_map.values.index(0)
    horizon = math.ceil((env.episode_config.lifecycle.cold_start_s + lookahead_s) / env.interval_s)
    xs, costs, misses = [], [], []
    k, truncated = 0, False
    while not truncated:
        if k % every == 0:
            outcomes = [branch(env, a, zero, horizon) for a in range(len(env.action_map))]
            xs.append(obs)
            costs.append([c for c, _ in outcomes])
            misses.append([m for _, m in outcomes])
        obs, _, _, truncated, _ = env.step(zero)
        k += 1
    return {"seed": seed, "x": np.array(xs, np.float32), "cost": np.array(costs), "misses": np.array(misses), "zero": zero}


def labels(cost: np.ndarray, misses: np.ndarray, zero: int, weight: float, margin: float) -> np.ndarray:
    """Per sample, the step with the lowest ``cost + weight x misses``; the zero step unless beaten by ``margin``."""
    score = cost + weight * misses
    best = score.argmin(axis=1)
    gain = score[:, zero] - score[np.arange(len(score)), best]
    return np.where(gain > margin * np.maximum(np.abs(score[:, zero]), 1e-9), best, zero)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/train/ppo.yaml"))
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--every", type=int, default=2, help="label every N-th step")
    parser.add_argument("--lookahead-s", type=float, default=120.0, help="branches run a cold start plus this long")
    parser.add_argument("--weights", default="0.02,0.1,0.5", help="miss weights (USD per avoidable miss), one artifact each")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("out/rollout"))
    args = parser.parse_args()
    config = load_train_config(args.config)
    started = time.perf_counter()
    cache = args.out / "rollouts.npz"
    if cache.exists():
        data = dict(np.load(cache))
    else:
        done = [0]

        def progress(_outcome) -> None:
            done[0] += 1
            print(f"  {done[0]}/{args.episodes} episodes ({time.perf_counter() - started:.0f} s)", flush=True)

        with make_executor(args.workers, None) as executor:
            outcomes = executor.map(rollout, (config, args.lookahead_s, args.every), list(range(FIRST_SEED, FIRST_SEED + args.episodes)),
                                    on_done=progress)
        episodes = [o.value for o in outcomes if o.ok]
        for o in outcomes:
            if not o.ok:
                print(f"  failed: {o.failure}", flush=True)
        data = {k: np.concatenate([e[k] for e in episodes]) for k in ("x", "cost", "misses")}
        data["zero"] = np.array(episodes[0]["zero"])
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    collected = time.perf_counter() - started
    zero = int(data["zero"])
    for weight in (float(w) for w in args.weights.split(",")):
        y = labels(data["cost"], data["misses"], zero, weight, args.margin)
        net, _ = fit(data["x"], y, data["cost"].shape[1], args.epochs, seed=0)
        out = args.out / f"w{weight:g}"
        export(net, data["x"], config, out, {"algorithm": "rollout (one step of policy iteration on the planner)", "miss_weight": weight,
                                             "margin": args.margin, "lookahead_s": args.lookahead_s, "episodes": args.episodes,
                                             "samples": len(y), "first_seed": FIRST_SEED})
        print(f"w {weight:g}: labels {np.bincount(y, minlength=data['cost'].shape[1]).tolist()} -> {out}", flush=True)
    print(json.dumps({"samples": len(data["x"]), "collect_s": round(collected), "total_s": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
