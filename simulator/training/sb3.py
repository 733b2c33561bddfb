"""Train PPO, A2C or DQN (stable-baselines3) on ``kis/Autoscale-v0``.

Imports torch and stable-baselines3 lazily: they belong to the ``train`` extra.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.training.config import TrainConfig
from simulator.training.envs import make_env

#: Defaults per algorithm; the config's ``hyperparameters`` override them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"learning_rate": 3e-4, "n_steps": 256, "batch_size": 256, "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.01},
    "a2c": {"learning_rate": 7e-4, "n_steps": 16, "gamma": 0.99, "ent_coef": 0.01},
    "dqn": {"learning_rate": 1e-4, "buffer_size": 100_000, "learning_starts": 5_000, "batch_size": 128, "gamma": 0.99,
            "train_freq": 4, "target_update_interval": 2_000, "exploration_fraction": 0.3, "exploration_final_eps": 0.02},
}


def _algorithm(name: str):
    from stable_baselines3 import A2C, DQN, PPO

    return {"ppo": PPO, "a2c": A2C, "dqn": DQN}[name]


def train_sb3(
    config: TrainConfig, out_dir: Path, *, progress: bool = True, export: bool = True, env_factory: Callable[[], Any] | None = None
) -> Any:
    """Train, log (CSV + TensorBoard in ``out_dir``), evaluate periodically, save the
    SB3 model and export the torch-free artifact to ``out_dir / "artifact"``.

    ``env_factory`` replaces the config's environment (tests inject small clusters).
    """
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import configure

    from simulator.training.callbacks import FeatureRangeCallback, LagrangianCallback, SameEpisodesEvalCallback

    if config.algo not in DEFAULTS:
        raise ValueError(f"train_sb3 handles ppo, a2c and dqn, not {config.algo!r}")
    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2))
    n_envs = 1 if config.algo == "dqn" else config.n_envs
    factory = env_factory or (lambda: make_env(config))
    probe = factory()  # the action map and the planner come from the env actually trained on
    if config.vec_env == "subproc" and n_envs > 1:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        venv = make_vec_env(factory, n_envs=n_envs, seed=config.seed, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "forkserver"})
    else:
        venv = make_vec_env(factory, n_envs=n_envs, seed=config.seed)
    eval_env = make_vec_env(factory, n_envs=1)
    params = {**DEFAULTS[config.algo], **config.hyperparameters}
    model = _algorithm(config.algo)(
        "MlpPolicy", venv, seed=config.seed, verbose=0, device="cpu",
        policy_kwargs={"net_arch": list(config.net_arch)}, **params,
    )
    _bias_towards_zero_step(model, probe.action_map, config.initial_zero_bias)
    model.set_logger(configure(str(out_dir), ["csv", "tensorboard"]))
    ranges = FeatureRangeCallback()
    best_dir = out_dir / "best"
    eval_seed = config.seed + 10_000
    evaluation = SameEpisodesEvalCallback(
        eval_env, eval_freq=max(1, config.eval.every_steps // n_envs), n_eval_episodes=config.eval.episodes,
        log_path=str(out_dir / "eval"), best_model_save_path=str(best_dir), deterministic=True, verbose=0,
        eval_seed=eval_seed,
    )
    # the starting policy is a candidate too (for residual actions: the planner), so training never ships a
    # policy that did worse on the held-out episodes than the one it started from
    best_dir.mkdir(exist_ok=True)
    eval_env.seed(eval_seed)
    start_rewards = evaluate_policy(model, eval_env, n_eval_episodes=config.eval.episodes, deterministic=True,
                                    return_episode_rewards=True)[0]
    start_reward = evaluation.best_mean_reward = float(np.mean(start_rewards))
    model.save(best_dir / "best_model.zip")
    callbacks: list[Any] = [ranges, evaluation]
    if config.env.lagrangian is not None:
        callbacks.append(LagrangianCallback(config.env.lagrangian, config.env.slo_weight))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # SubprocVecEnv for training, DummyVecEnv for the one evaluation env: meant
            warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
            model.learn(total_timesteps=config.total_steps, callback=CallbackList(callbacks), progress_bar=progress)
    finally:
        model.logger.close()  # the CSV file and the TensorBoard writer's thread
        venv.close()
        eval_env.close()
    seconds = time.perf_counter() - start
    model.save(out_dir / "model.zip")
    _write_eval_curve(out_dir, (start_reward, float(np.std(start_rewards))))
    # ship the checkpoint that evaluated best (EvalCallback saved it; the start counts), not the last one
    selected = _selected_steps(evaluation, start_reward)
    model = _algorithm(config.algo).load(best_dir / "best_model.zip", device="cpu")
    if export:
        from simulator.training.export import export_artifact

        export_artifact(
            model, out_dir / "artifact", action_map=probe.action_map, planner=probe.policy.planner,
            feature_range=ranges.feature_range(), capacity=probe.base_capacity(),
            provenance={
                "algorithm": config.algo,
                "total_steps": config.total_steps,
                "selected_steps": selected,
                "eval_reward": round(evaluation.best_mean_reward, 4),
                "seed": config.seed,
                "train_seconds": round(seconds, 1),
                "workloads": "randomized" if config.env.randomized is not None else list(config.env.workloads),
                "randomized": config.env.randomized.model_dump() if config.env.randomized is not None else None,
                "gpus": list(config.env.gpus),
                "cold_start_s": list(config.env.cold_start_s) if config.env.cold_start_s else None,
                "lagrangian": config.env.lagrangian.model_dump() if config.env.lagrangian is not None else None,
                "rate_scale": list(config.env.rate_scale),
                "cold_start_scale": list(config.env.cold_start_scale),
                "reward": {"cost_weight": config.env.cost_weight, "slo_weight": config.env.slo_weight},
                "cluster": config.cluster.model_dump(),
                "slo": {"ttft_ms": config.env.slo_ttft_ms, "tpot_ms": config.env.slo_tpot_ms},
                "interval_s": config.env.interval_s,
                "python": platform.python_version(),
            },
        )
    return model


def _bias_towards_zero_step(model: Any, action_map: Any, bias: float) -> None:
    """Start an actor-critic policy near "no change" (the planner's proposal, for residual actions)."""
    if bias <= 0 or 0 not in action_map.values or not hasattr(model.policy, "action_net"):
        return
    import torch

    with torch.no_grad():
        model.policy.action_net.bias[action_map.values.index(0)] += bias


def _selected_steps(evaluation: Any, start_reward: float) -> int:
    """The training step of the checkpoint with the best evaluation (0: the starting policy)."""
    means = [float(np.mean(r)) for r in evaluation.evaluations_results]
    if not means or max(means) <= start_reward:
        return 0
    return int(evaluation.evaluations_timesteps[int(np.argmax(means))])


def _write_eval_curve(out_dir: Path, start: tuple[float, float]) -> None:
    """Flatten EvalCallback's evaluations.npz into eval_curve.csv (steps, mean reward, std), from step 0."""
    path = out_dir / "eval" / "evaluations.npz"
    rows = ["timesteps,mean_reward,std_reward", f"0,{start[0]:.6f},{start[1]:.6f}"]
    if not path.exists():
        (out_dir / "eval_curve.csv").write_text("\n".join(rows) + "\n")
        return
    data = np.load(path)
    for steps, rewards in zip(data["timesteps"], data["results"]):
        rows.append(f"{int(steps)},{float(np.mean(rewards)):.6f},{float(np.std(rewards)):.6f}")
    (out_dir / "eval_curve.csv").write_text("\n".join(rows) + "\n")


def summary_json(out_dir: Path) -> dict[str, Any]:
    """A small machine-readable summary of a finished run."""
    curve = out_dir / "eval_curve.csv"
    points = [line.split(",") for line in curve.read_text().splitlines()[1:]] if curve.exists() else []
    return {
        "out_dir": str(out_dir),
        "artifact": str(out_dir / "artifact") if (out_dir / "artifact").exists() else None,
        "evaluations": [{"timesteps": int(p[0]), "mean_reward": float(p[1])} for p in points],
        "config": json.loads((out_dir / "config.json").read_text()),
    }
