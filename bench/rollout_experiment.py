"""An experiment: one step of policy iteration on the planner (rollouts), learned as residual steps.

PPO learns no residual around the planner (bench/results/train_default.md) and
imitating the clairvoyant oracle sheds replicas ahead of bursts the policy
cannot foresee (bench/results/imitation_experiment.md). This asks each state
what a deviation is worth: at every labelled step of a randomised training
episode (``--config``, never the benchmark's traces) the environment
is copied once per residual step, the copy takes that step and then follows the
planner for one cold start plus ``--lookahead-s``, and the step's cost (USD)
and avoidable SLO misses are summed. The copies share the cluster's random
state, so the steps differ only by what they do. The label for a miss weight
``w`` is the step with the lowest ``cost + w x misses``, the zero step unless
another beats it by ``--margin`` of the zero step's score (a rollout improves
on the planner only where it clearly does). A 64x64 MLP learns the label from
the ``kis-obs/2`` observation, one artifact per weight. With ``--rounds`` N,
each later round's episodes and branches follow the network of
``--follow-weight`` (the next step of policy iteration), and every network is
fitted on all rounds' samples. The collection, labels,
fit and export are :mod:`simulator.training.rollout`'s, the ones ``kis train``
runs for ``algo: rollout`` (one weight, ``configs/train/rollout.yaml``); this
script labels one collection at several weights.

    .venv/bin/python bench/rollout_experiment.py --episodes 48 --out out/rollout
    .venv/bin/python bench/policy_benchmark.py --only learned --reuse bench/results/policy_benchmark.json \\
        --artifact out/rollout/w0.1 --out out/rollout/benchmark_w0.1.md

Results: bench/results/rollout_experiment.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.executor import make_executor  # noqa: E402
from simulator.training.config import load_train_config  # noqa: E402
from simulator.training.rollout import collect, export, fit, labels, numpy_weights  # noqa: E402

#: Training episodes start at this seed (the imitation experiment used 1000 and up, planner tuning 5000 and up).
FIRST_SEED = 3000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/train/ppo.yaml"))
    parser.add_argument("--episodes", type=int, default=48, help="episodes per round")
    parser.add_argument("--rounds", type=int, default=1, help="later rounds follow the network of --follow-weight")
    parser.add_argument("--follow-weight", type=float, default=0.1, help="the weight whose network later rounds follow")
    parser.add_argument("--every", type=int, default=2, help="label every N-th step")
    parser.add_argument("--lookahead-s", type=float, default=120.0, help="branches run a cold start plus this long")
    parser.add_argument("--weights", default="0.02,0.1,0.5", help="miss weights (USD per avoidable miss), one artifact each")
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--fit-seed", type=int, default=0, help="seed of the network's fit (kis train uses the config's seed)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("out/rollout"))
    args = parser.parse_args()
    config = load_train_config(args.config)
    started = time.perf_counter()
    rounds: list[dict[str, np.ndarray]] = []
    follow = None
    for k in range(args.rounds):
        cache = args.out / ("rollouts.npz" if k == 0 else f"rollouts_round{k}.npz")  # a rerun reuses what was collected
        if cache.exists():
            rounds.append(dict(np.load(cache)))
        else:
            done = [0]

            def progress(_outcome) -> None:
                done[0] += 1
                print(f"  round {k}: {done[0]}/{args.episodes} episodes ({time.perf_counter() - started:.0f} s)", flush=True)

            first = FIRST_SEED + k * args.episodes
            with make_executor(args.workers, None) as executor:
                rounds.append(collect(config, range(first, first + args.episodes), args.lookahead_s, args.every, executor, progress,
                                      follow))
            args.out.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **rounds[-1])
        data = {key: np.concatenate([d[key] for d in rounds]) for key in ("x", "cost", "misses")}
        zero = int(rounds[0]["zero"])
        if k + 1 < args.rounds:
            y = labels(data["cost"], data["misses"], zero, args.follow_weight, args.margin)
            follow = numpy_weights(fit(data["x"], y, data["cost"].shape[1], args.epochs, args.fit_seed, config.net_arch))
    collected = time.perf_counter() - started
    for weight in (float(w) for w in args.weights.split(",")):
        y = labels(data["cost"], data["misses"], zero, weight, args.margin)
        net = fit(data["x"], y, data["cost"].shape[1], args.epochs, args.fit_seed, config.net_arch)
        out = args.out / f"w{weight:g}"
        export(net, data["x"], config, out, {"algorithm": "rollout (policy iteration on the planner)", "miss_weight": weight,
                                             "margin": args.margin, "lookahead_s": args.lookahead_s, "every": args.every,
                                             "episodes": args.episodes, "rounds": args.rounds, "first_seed": FIRST_SEED,
                                             "samples": len(y), "seed": args.fit_seed})
        print(f"w {weight:g}: labels {np.bincount(y, minlength=data['cost'].shape[1]).tolist()} -> {out}", flush=True)
    print(json.dumps({"samples": len(data["x"]), "collect_s": round(collected), "total_s": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
