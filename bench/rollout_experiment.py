"""An experiment: one step of policy iteration on the planner (rollouts), learned as residual steps.

PPO learns no residual around the planner (bench/results/train_default.md) and
imitating the clairvoyant oracle sheds replicas ahead of bursts the policy
cannot foresee (bench/results/imitation_experiment.md). This asks each state
what a deviation is worth: at every labelled step of a randomised training
episode (``--config``, never the benchmark's traces) the environment
is copied once per residual step, the copy takes that step and then follows the
planner for one cold start plus ``--lookahead-s``, and the step's cost (USD),
avoidable SLO misses and requests are summed. The copies share the cluster's
random state, so the steps differ only by what they do. A labelling ``wW`` takes
the step with the lowest ``cost + W x misses``; ``sS`` the cheapest step whose
branch misses at most a share S of its requests (the SLO as a constraint); the
zero step unless another clearly beats it (``--margin``). A 64x64 MLP learns
the label from the ``kis-obs/2`` observation, one artifact per labelling. With
``--rounds`` N, each later round's episodes and branches follow the network of
the ``--follow`` labelling (the next step of policy iteration), and every
network is fitted on all rounds' samples. Collection, labels, fit and export
are :mod:`simulator.training.rollout`'s, the ones ``kis train`` runs for
``algo: rollout`` (one labelling, ``configs/train/rollout.yaml``); this script
labels one collection several ways.

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
from simulator.training.rollout import SAMPLE_KEYS, collect, export, fit, label_samples, numpy_weights  # noqa: E402

#: Training episodes start at this seed (the imitation experiment used 1000 and up, planner tuning 5000 and up).
FIRST_SEED = 3000


def objective(name: str) -> dict[str, float]:
    """``w0.1`` -> a miss weight of 0.1 USD; ``s0.005`` -> at most 0.5% of the requests missed."""
    kind, value = name[:1], name[1:]
    if kind not in ("w", "s"):
        raise SystemExit(f"error: labels {name!r}: expected wWEIGHT or sSHARE, e.g. w0.1 or s0.005")
    return {"miss_weight": float(value)} if kind == "w" else {"miss_share": float(value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/train/ppo.yaml"))
    parser.add_argument("--episodes", type=int, default=48, help="episodes per round")
    parser.add_argument("--rounds", type=int, default=1, help="later rounds follow the network of --follow")
    parser.add_argument("--follow", default="w0.1", help="the labels whose network later rounds follow: wW or sS")
    parser.add_argument("--every", type=int, default=2, help="label every N-th step")
    parser.add_argument("--lookahead-s", type=float, default=120.0, help="branches run a cold start plus this long")
    parser.add_argument("--labels", default="w0.02,w0.1,w0.5", help="one artifact per labelling: wW, a miss weight "
                        "(USD per avoidable miss), or sS, the cheapest step within a miss share S of the requests")
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
        data = {key: np.concatenate([d[key] for d in rounds]) for key in SAMPLE_KEYS}
        zero = int(rounds[0]["zero"])
        if k + 1 < args.rounds:
            y = label_samples(data, zero, margin=args.margin, **objective(args.follow))
            follow = numpy_weights(fit(data["x"], y, data["cost"].shape[1], args.epochs, args.fit_seed, config.net_arch))
    collected = time.perf_counter() - started
    for name in args.labels.split(","):
        y = label_samples(data, zero, margin=args.margin, **objective(name))
        net = fit(data["x"], y, data["cost"].shape[1], args.epochs, args.fit_seed, config.net_arch)
        out = args.out / name
        export(net, data["x"], config, out, {"algorithm": "rollout (policy iteration on the planner)", **objective(name),
                                             "margin": args.margin, "lookahead_s": args.lookahead_s, "every": args.every,
                                             "episodes": args.episodes, "rounds": args.rounds, "first_seed": FIRST_SEED,
                                             "samples": len(y), "seed": args.fit_seed})
        print(f"{name}: labels {np.bincount(y, minlength=data['cost'].shape[1]).tolist()} -> {out}", flush=True)
    print(json.dumps({"samples": len(data["x"]), "collect_s": round(collected), "total_s": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
