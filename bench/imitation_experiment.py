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
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.artifact import ARTIFACT_FORMAT, FeatureRange  # noqa: E402
from controller.observation import OBSERVATION_SIZE, schema_description  # noqa: E402
from simulator.executor import make_executor  # noqa: E402
from simulator.training.config import TrainConfig, load_train_config  # noqa: E402
from simulator.training.envs import make_env  # noqa: E402
from simulator.training.export import planner_parameters  # noqa: E402

Weights = list[tuple[np.ndarray, np.ndarray]]


def residual_label(wanted: int, proposal: int, steps: np.ndarray) -> int:
    """Index of the step that brings ``proposal`` closest to ``wanted`` (the oracle's count)."""
    return int(np.argmin(np.abs(steps - np.clip(wanted - proposal, steps.min(), steps.max()))))


def mlp_scores(weights: Weights, obs: np.ndarray) -> np.ndarray:
    """The MLP's action scores in numpy (tanh hidden layers), for rollouts in worker processes."""
    h = obs
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        h = np.tanh(h) if i < len(weights) - 1 else h
    return h


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


def fit(x: np.ndarray, y: np.ndarray, actions: int, epochs: int, seed: int):
    """A 64x64 tanh MLP fitted by cross-entropy; the torch module and its weights."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(OBSERVATION_SIZE, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, actions))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt, rng = torch.tensor(x), torch.tensor(y), np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 256)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            opt.step()
    net.eval()
    weights = [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()) for layer in net if hasattr(layer, "weight")]
    return net, weights


def export(net, x: np.ndarray, config: TrainConfig, out: Path, provenance: dict) -> None:
    """The network as a policy artifact (policy.onnx + metadata.json), in the format training writes."""
    import torch

    env = make_env(config)
    out.mkdir(parents=True, exist_ok=True)
    onnx = out / "policy.onnx"
    torch.onnx.export(net, (torch.zeros(1, OBSERVATION_SIZE),), str(onnx), input_names=["obs"], output_names=["scores"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},), dynamo=True, verbose=False,
                      external_data=False)
    metadata = {"format": ARTIFACT_FORMAT, "schema": schema_description(), "action": env.action_map.to_dict(),
                "planner": planner_parameters(env.policy.planner), "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
                "feature_range": FeatureRange(tuple(map(float, x.min(0))), tuple(map(float, x.max(0)))).to_dict(),
                "capacity": env.base_capacity().to_dict(),
                "provenance": {"exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **provenance}}
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


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
            net, weights = fit(x, y, len(make_env(config).steps), args.epochs, seed=rnd)
            export(net, x, config, args.out / f"round{rnd}",
                   {"algorithm": "imitation (DAgger)" if rnd else "imitation (behaviour cloning)", "round": rnd,
                    "episodes": len(gathered), "samples": len(x), "oracle_target": args.oracle_target, "beta": args.beta})
            print(f"round {rnd}: {len(episodes)} episodes ({sum(e['met'] for e in episodes)} with the oracle on target), "
                  f"{len(x)} samples, labels {np.bincount(y, minlength=5).tolist()}, {time.perf_counter() - started:.0f} s "
                  f"-> {args.out / f'round{rnd}'}", flush=True)


if __name__ == "__main__":
    main()
