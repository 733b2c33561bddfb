"""``algo: rollout``: policy iteration on the planner, learned as residual steps.

PPO's returns bury the worth of one residual step in an hour of noise
(bench/results/train_default.md). This asks each state directly: at every
``every``-th step of a randomised episode that follows the planner, the
environment (``kis/Autoscale-v0``, which steps through the controller's
``decide`` and guardrails) is copied once per residual step; each copy takes
its step, then the planner's, for one cold start plus ``lookahead_s``, and its
cost (USD) and avoidable SLO misses are summed. The copies share the cluster's
random state, so the steps differ only by what they do. The label is the step
with the lowest ``cost + miss_weight x misses``, or with ``miss_share`` the
cheapest step whose branch misses at most that share of its requests; the zero
step unless another clearly beats it (``margin``: the policy leaves the planner
only where a deviation clearly pays). An MLP learns the label from the
``kis-obs/2`` observation by cross-entropy and is exported as the same
torch-free artifact the other algorithms write. Each further round (``rounds``)
draws new episodes that follow the network so far, in their branches too, and
fits again on every sample: the next step of policy iteration.

Seeded: the same config gives the same labels and the same network.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator.training.config import TrainConfig
from simulator.training.envs import make_env

#: What each labelled sample records: the observation and, per residual step, its branch's cost, misses and requests.
SAMPLE_KEYS = ("x", "cost", "misses", "served")

#: A network's layers as numpy ``(weight, bias)`` pairs (tanh between them): the policy branches follow after
#: their first step in later rounds, evaluated without torch in worker processes.
Weights = list[tuple[np.ndarray, np.ndarray]]


def numpy_weights(net) -> Weights:
    """The layers of a fitted MLP (:func:`fit`) as numpy pairs."""
    return [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()) for layer in net if hasattr(layer, "weight")]


def mlp_scores(weights: Weights, obs: np.ndarray) -> np.ndarray:
    """The MLP's action scores for observation rows ``obs``."""
    h = obs
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        h = np.tanh(h) if i < len(weights) - 1 else h
    return h


def _next_action(follow: Weights | None, obs: np.ndarray, zero: int) -> int:
    """The step the followed policy takes: the planner's (the zero step) or the network's."""
    return zero if follow is None else int(mlp_scores(follow, obs[None, :]).argmax())


def branch(env, action: int, zero: int, steps: int, follow: Weights | None = None) -> tuple[float, float, float]:
    """Cost (USD), avoidable misses and requests that could meet the SLO (completed or lost) of a copy of ``env``
    that takes ``action``, then follows the planner (or the network ``follow``) for ``steps - 1``."""
    memo = {id(env.workload): env.workload, id(env._feasible): env._feasible}  # read-only and large: shared, not copied
    twin = copy.deepcopy(env, memo)
    obs, _, _, truncated, info = twin.step(action)
    cost, misses, served = info["cost_usd"], info["slo_misses"], info["completed"]
    for _ in range(steps - 1):
        if truncated:
            break
        obs, _, _, truncated, info = twin.step(_next_action(follow, obs, zero))
        cost, misses, served = cost + info["cost_usd"], misses + info["slo_misses"], served + info["completed"]
    return cost, misses, served


def rollout_episode(shared: tuple[TrainConfig, float, int, Weights | None], seed: int) -> dict[str, Any]:
    """One episode following the planner (or the network of ``shared``); every ``every``-th step's residual steps
    are scored by branching.

    ``shared`` is ``(config, lookahead_s, every, follow)``. Returns the observations (``x``), the cost, avoidable
    misses and requests of each branch (``cost``, ``misses``, ``served``: samples x actions) and the zero step's index."""
    config, lookahead_s, every, follow = shared
    env = make_env(config)
    obs, _ = env.reset(seed=seed)
    zero = env.action_map.values.index(0)
    horizon = math.ceil((env.episode_config.lifecycle.cold_start_s + lookahead_s) / env.interval_s)
    xs, outcomes = [], []
    k, truncated = 0, False
    while not truncated:
        if k % every == 0:
            xs.append(obs)
            outcomes.append([branch(env, a, zero, horizon, follow) for a in range(len(env.action_map))])
        obs, _, _, truncated, _ = env.step(_next_action(follow, obs, zero))
        k += 1
    cost, misses, served = np.moveaxis(np.array(outcomes, dtype=float).reshape(len(xs), len(env.action_map), 3), 2, 0)
    return {"seed": seed, "x": np.array(xs, np.float32), "cost": cost, "misses": misses, "served": served, "zero": zero}


def collect(config: TrainConfig, seeds: Sequence[int], lookahead_s: float, every: int, executor=None,
            on_episode: Callable[[Any], None] | None = None, follow: Weights | None = None) -> dict[str, np.ndarray]:
    """The rollouts of ``seeds`` on ``executor`` (serial by default), concatenated; failed episodes raise."""
    from simulator.executor import SerialExecutor

    executor = executor or SerialExecutor()
    outcomes = executor.map(rollout_episode, (config, lookahead_s, every, follow), list(seeds), on_done=on_episode)
    failed = [o.failure for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} rollout episode(s) failed; first: {failed[0]}")
    episodes = [o.value for o in outcomes]
    data = {k: np.concatenate([e[k] for e in episodes]) for k in SAMPLE_KEYS}
    data["zero"] = np.array(episodes[0]["zero"])
    return data


def labels(cost: np.ndarray, misses: np.ndarray, zero: int, weight: float, margin: float) -> np.ndarray:
    """Per sample, the step with the lowest ``cost + weight x misses``; the zero step unless beaten by ``margin``."""
    score = cost + weight * misses
    best = score.argmin(axis=1)
    gain = score[:, zero] - score[np.arange(len(score)), best]
    return np.where(gain > margin * np.maximum(np.abs(score[:, zero]), 1e-9), best, zero)


def constrained_labels(cost: np.ndarray, misses: np.ndarray, served: np.ndarray, zero: int, share: float,
                       margin: float) -> np.ndarray:
    """Per sample, the cheapest step whose branch misses at most ``share`` of its requests (the SLO as a constraint,
    the same at any request rate, where a weight per miss is not); the zero step unless that saves over ``margin``
    of its cost. Where the zero step misses more than the share, the cheapest step within it; where no step is
    within it, the one with the fewest misses (the zero step unless it has ``margin`` more)."""
    rows = np.arange(len(cost))
    within = misses <= share * np.maximum(served, 1.0)
    cheapest = np.where(within, cost, np.inf).argmin(axis=1)
    fewest = np.lexsort((cost, misses), axis=1)[:, 0]  # the fewest misses, then the cheapest
    saves = cost[rows, cheapest] < (1.0 - margin) * cost[:, zero]
    fewer = misses[rows, fewest] < (1.0 - margin) * misses[:, zero]
    return np.where(within[:, zero], np.where(saves, cheapest, zero),
                    np.where(within.any(axis=1), cheapest, np.where(fewer, fewest, zero)))


def label_samples(data: dict[str, np.ndarray], zero: int, *, margin: float, miss_weight: float = 0.0,
                  miss_share: float | None = None) -> np.ndarray:
    """The labels of collected samples: :func:`constrained_labels` with ``miss_share``, else :func:`labels`."""
    if miss_share is not None:
        return constrained_labels(data["cost"], data["misses"], data["served"], zero, miss_share, margin)
    return labels(data["cost"], data["misses"], zero, miss_weight, margin)


def fit(x: np.ndarray, y: np.ndarray, actions: int, epochs: int, seed: int, hidden: Sequence[int] = (64, 64)):
    """A tanh MLP fitted by cross-entropy (Adam, mini-batches of 256); the torch module."""
    import torch

    from controller.observation import OBSERVATION_SIZE

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    width = OBSERVATION_SIZE
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.Tanh()]
        width = size
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, actions))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt, rng = torch.tensor(x), torch.tensor(y), np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 256)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            opt.step()
    return net.eval()


def export(net, x: np.ndarray, config: TrainConfig, out: Path, provenance: dict[str, Any]) -> Path:
    """The network as a policy artifact (``policy.onnx`` + ``metadata.json``), in the format every algorithm writes;
    the feature range is the one of the observations ``x`` it learned from."""
    from controller.artifact import FeatureRange
    from simulator.training.export import write_artifact

    env = make_env(config)
    return write_artifact(net, out, action_map=env.action_map, planner=env.policy.planner, provenance=provenance,
                          feature_range=FeatureRange(tuple(map(float, x.min(0))), tuple(map(float, x.max(0)))),
                          capacity=env.base_capacity())


def train_rollout(config: TrainConfig, out: Path, executor=None, on_episode: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Collect the rollouts of ``config.rollout``, fit the MLP and write ``out/artifact``, ``out/rollouts.npz`` and
    ``out/summary.json``; returns the summary (label counts per step, samples, seconds).

    With ``rounds`` > 1 each later round draws new episodes that follow the previous round's network, its branches
    too (the next step of policy iteration), and the network is fitted again on every round's samples."""
    r = config.rollout
    started = time.perf_counter()
    rounds: list[dict[str, np.ndarray]] = []
    follow: Weights | None = None
    for k in range(r.rounds):
        first = r.first_seed + k * r.episodes
        rounds.append(collect(config, range(first, first + r.episodes), r.lookahead_s, r.every, executor, on_episode, follow))
        data = {key: np.concatenate([d[key] for d in rounds]) for key in SAMPLE_KEYS}
        zero = int(rounds[0]["zero"])
        y = label_samples(data, zero, margin=r.margin, miss_weight=r.miss_weight, miss_share=r.miss_share)
        net = fit(data["x"], y, data["cost"].shape[1], r.epochs, config.seed, config.net_arch)
        follow = numpy_weights(net)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "rollouts.npz", **data, zero=np.array(zero), round=np.concatenate([np.full(len(d["x"]), k) for k, d in enumerate(rounds)]))
    provenance = {"algorithm": "rollout (policy iteration on the planner)", "miss_weight": r.miss_weight, "miss_share": r.miss_share,
                  "margin": r.margin, "lookahead_s": r.lookahead_s, "every": r.every, "episodes": r.episodes, "rounds": r.rounds,
                  "first_seed": r.first_seed, "samples": int(len(y)), "seed": config.seed}
    artifact = export(net, data["x"], config, out / "artifact", provenance)
    steps = make_env(config).action_map.values
    summary = {"algo": "rollout", "out_dir": str(out), "artifact": str(artifact), "samples": int(len(y)),
               "labels": dict(zip(map(str, steps), np.bincount(y, minlength=len(steps)).tolist())),
               "seconds": round(time.perf_counter() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
