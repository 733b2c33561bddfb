"""An experiment: imitate the clairvoyant oracle (behaviour cloning, then DAgger) as residual steps around the planner.

PPO on ``kis/Autoscale-v0`` learns no residual that changes a deterministic
action (bench/results/train_default.md). This tries the direct signal instead:
on randomised training episodes (configs/train/ppo.yaml, never the benchmark's
traces), the oracle's schedule says how many replicas each interval should
have asked for; the label of a step is that count minus the planner's proposal,
clipped to the action steps. A 64x64 MLP learns the label from the same
``kis-obs/2`` observation the learned policy sees, and is written as a policy
artifact the controller loads unchanged. Round 0 follows the labels (the
oracle's states); later rounds follow the network, taking the label with
probability ``beta`` (DAgger), and train on everything gathered.

    .venv/bin/python bench/imitation_experiment.py --episodes 64 --rounds 2 --out out/imitation
    .venv/bin/python bench/policy_benchmark.py --only learned --reuse bench/results/policy_benchmark.json \\
        --artifact out/imitation/round1 --out out/imitation/benchmark.md

Results: bench/results/imitation_experiment.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.executor import make_executor  # noqa: E402
from simulator.training.config import TrainConfig, load_train_config  # noqa: E402
from simulator.training.envs import make_env  # noqa: E402
from simulator.training.rollout import Weights, export, fit, mlp_scores, numpy_weights  # noqa: E402


def residual_label(wanted: int, proposal: int, steps: np.ndarray) -> int:
    """Index of the step that brings ``proposal`` closest to ``wanted`` (the oracle's count)."""
    return int(np.argmin(np.abs(steps - np.clip(wanted - proposal, steps.min(), steps.max()))))


def rollout(shared: tuple[TrainConfig, float, float], cell: tuple[int, Weights | None]) -> dict:
    """One episode: the oracle's schedule for it, then a rollout labelled with it."""
    from simulator.evaluation.oracle import oracle

    config, beta, target = shared
    seed, weights = cell
    env = make_env(config)
    env.reset(seed=seed)
    found = oracle(env.workload, env.episode_config, env._pools(env.episode_config), slo=env.slo, interval_s=env.interval_s,
                   min_replicas=env.min_replicas, max_replicas=env.max_replicas, seed=seed, iterations=7,
                   target_attainment=target)
    steps, rng = np.array(env.steps), np.random.default_rng(seed + 99)
    xs, ys, done = [], [], False
    while not done:
        ctx = env.autoscaler.context(env._t, env._cluster.desired)
        obs, planned, _ = env.policy.observe(env.last_snapshot, ctx, env._state.policy_state)
        k = min(int(round(env._t / env.interval_s)), len(found.schedule) - 1)
        label = residual_label(int(found.schedule[k]), planned.replicas if planned.replicas is not None else env._cluster.desired, steps)
        xs.append(obs)
        ys.append(label)
        action = label if weights is None or rng.random() < beta else int(mlp_scores(weights, obs[None, :]).argmax())
        *_, truncated, _ = env.step(action)
        done = truncated
    return {"seed": seed, "x": np.array(xs, np.float32), "y": np.array(ys), "met": found.met_target}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/train/ppo.yaml"))
    parser.add_argument("--episodes", type=int, default=64, help="episodes per round")
    parser.add_argument("--rounds", type=int, default=2, help="round 0 follows the labels, later rounds the network (DAgger)")
    parser.add_argument("--beta", type=float, default=0.2, help="chance that a DAgger rollout takes the label")
    parser.add_argument("--oracle-target", type=float, default=0.99, help="the oracle's attainment target for the labels")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("out/imitation"))
    args = parser.parse_args()
    config = load_train_config(args.config)
    gathered: list[dict] = []
    weights: Weights | None = None
    with make_executor(args.workers, None) as executor:
        for rnd in range(args.rounds):
            started = time.perf_counter()
            seeds = range(1000 * (rnd + 1), 1000 * (rnd + 1) + args.episodes)
            outcomes = executor.map(rollout, (config, args.beta, args.oracle_target), [(s, weights) for s in seeds])
            episodes = [o.value for o in outcomes if o.ok]
            gathered += [e for e in episodes if e["met"]]  # an oracle that missed its target is no expert
            x = np.concatenate([e["x"] for e in gathered])
            y = np.concatenate([e["y"] for e in gathered])
            net = fit(x, y, len(make_env(config).steps), args.epochs, seed=rnd)
            weights = numpy_weights(net)
            export(net, x, config, args.out / f"round{rnd}",
                   {"algorithm": "imitation (DAgger)" if rnd else "imitation (behaviour cloning)", "round": rnd,
                    "episodes": len(gathered), "samples": len(x), "oracle_target": args.oracle_target, "beta": args.beta})
            print(f"round {rnd}: {len(episodes)} episodes ({sum(e['met'] for e in episodes)} with the oracle on target), "
                  f"{len(x)} samples, labels {np.bincount(y, minlength=5).tolist()}, {time.perf_counter() - started:.0f} s "
                  f"-> {args.out / f'round{rnd}'}", flush=True)


if __name__ == "__main__":
    main()
