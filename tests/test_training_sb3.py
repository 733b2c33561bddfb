"""SB3 training end to end on a small cluster, and the torch-free artifact round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytestmark = [pytest.mark.train, pytest.mark.filterwarnings("ignore::FutureWarning")]

from controller.artifact import load_artifact  # noqa: E402
from simulator.training.config import TrainConfig  # noqa: E402
from simulator.training.sb3 import train_sb3  # noqa: E402
from tests.test_qlearning import heavy_env  # noqa: E402


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_train_logs_and_artifact_round_trip(tmp_path, algo):
    config = TrainConfig(algo=algo, total_steps=600, n_envs=2, seed=3, eval={"every_steps": 300, "episodes": 1},
                         hyperparameters={"n_steps": 64, "batch_size": 64} if algo == "ppo" else {"learning_starts": 100})
    model = train_sb3(config, tmp_path, progress=False, env_factory=heavy_env)
    assert (tmp_path / "progress.csv").exists()
    assert (tmp_path / "eval_curve.csv").read_text().startswith("timesteps,mean_reward")
    assert list(tmp_path.glob("events.out.tfevents.*")), "TensorBoard log missing"
    artifact = tmp_path / "artifact"
    meta = json.loads((artifact / "metadata.json").read_text())
    assert meta["action"] == {"kind": "step", "steps": [-1, 0, 1]}
    assert meta["planner"]["target_utilization"] == 0.8 and meta["capacity"]["maxRps"]
    assert meta["provenance"]["algorithm"] == algo and meta["provenance"]["seed"] == 3
    assert sorted(p.name for p in artifact.iterdir()) == ["metadata.json", "policy.onnx"]  # one self-contained model file
    loaded = load_artifact(artifact)  # the controller's loader: from bytes, no torch
    # the feature range is what training saw: observations of another episode of the same traffic fall inside it,
    # an observation at the clip limit does not
    env, inside = heavy_env(), []
    obs, _ = env.reset(seed=99)
    for action in [2, 1, 1, 0, 1, 2, 1, 1]:
        inside.append(not loaded.feature_range.outside(obs))
        obs, *_ = env.step(action)
    assert np.mean(inside) >= 0.75
    assert loaded.feature_range.outside(np.full(model.observation_space.shape[0], 10.0))
    obs = np.random.default_rng(0).uniform(-3, 3, size=(1000, model.observation_space.shape[0])).astype(np.float32)
    onnx_actions = loaded.actions(obs)
    torch_actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(onnx_actions, torch_actions)


def test_the_artifact_is_the_checkpoint_that_evaluated_best_the_start_included(tmp_path):
    """The eval curve starts at step 0 (the starting policy); the shipped model is the one with the best mean
    evaluation reward on it, and the provenance names its step."""
    config = TrainConfig(algo="ppo", total_steps=768, n_envs=2, seed=5, eval={"every_steps": 256, "episodes": 1},
                         hyperparameters={"n_steps": 64, "batch_size": 64, "learning_rate": 0.05})
    model = train_sb3(config, tmp_path, progress=False, env_factory=heavy_env)
    curve = [line.split(",") for line in (tmp_path / "eval_curve.csv").read_text().splitlines()[1:]]
    steps, rewards = [int(c[0]) for c in curve], [float(c[1]) for c in curve]
    assert steps[0] == 0 and len(steps) >= 3
    provenance = json.loads((tmp_path / "artifact" / "metadata.json").read_text())["provenance"]
    best = int(np.argmax(rewards))
    assert provenance["selected_steps"] == steps[best]
    assert provenance["eval_reward"] == pytest.approx(rewards[best], abs=1e-3)
    # the returned (and exported) model is the saved best checkpoint, not the last update
    from stable_baselines3 import PPO

    best_model = PPO.load(tmp_path / "best" / "best_model.zip", device="cpu")
    obs = np.random.default_rng(1).uniform(-3, 3, size=(200, model.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], best_model.predict(obs, deterministic=True)[0])
    np.testing.assert_array_equal(load_artifact(tmp_path / "artifact").actions(obs), best_model.predict(obs, deterministic=True)[0])


def test_every_checkpoint_is_evaluated_on_the_same_episodes(tmp_path):
    """A policy that does not learn (learning rate 0) scores exactly its starting reward at every evaluation:
    the evaluations replay the same episodes, so checkpoints are compared on equal traffic."""
    config = TrainConfig(algo="ppo", total_steps=512, n_envs=2, seed=4, eval={"every_steps": 128, "episodes": 2},
                         hyperparameters={"n_steps": 64, "batch_size": 64, "learning_rate": 0.0})
    train_sb3(config, tmp_path, progress=False, env_factory=heavy_env)
    rewards = [float(line.split(",")[1]) for line in (tmp_path / "eval_curve.csv").read_text().splitlines()[1:]]
    assert len(rewards) >= 3 and len(set(rewards)) == 1
