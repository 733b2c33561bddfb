"""PPO on ``kis/Pipeline-v0``: train a policy for one pipeline, save it, run it as a pipeline controller.

:func:`train_ppo` trains stable-baselines3's PPO (CPU) on the environment and
writes ``DIR/model.zip`` and ``DIR/meta.json`` (pipeline, patterns, budget,
interval, steps, seed, training seconds). :class:`PpoController` reads the same
observation from a snapshot (:func:`simulator.envs.pipeline.observe`) and turns
the policy's ``-1/0/+1`` per stage into replicas; the evaluation runs it
through each stage's guardrails and the budget it was trained under
(:class:`~simulator.pipeline.stagewise.Guarded`). Torch and stable-baselines3
are imported only here, when a model is trained or loaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.pipeline.controllers import PipelineDecision, bound
from simulator.pipeline.snapshot import PipelineSnapshot

MODEL_FILE, META_FILE = "model.zip", "meta.json"


def train_ppo(pipeline: str, steps: int, out: str | Path, *, patterns: str = "ramp,periodic,spike", seed: int = 0,
              gpu_budget: int = 12, duration_s: float = 600.0, interval_s: float = 15.0,
              hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train PPO for ``steps`` environment steps on ``pipeline``; save the model and its metadata under ``out``."""
    import torch
    from stable_baselines3 import PPO

    from simulator.envs.pipeline import PipelineEnv

    torch.set_num_threads(1)
    env = PipelineEnv(pipeline, pattern=patterns, duration_s=duration_s, interval_s=interval_s, gpu_budget=gpu_budget)
    params = {"n_steps": 256, "batch_size": 64, "gamma": 0.95, "learning_rate": 3e-4, **(hyperparameters or {})}
    start = time.perf_counter()
    model = PPO("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **params)
    model.learn(total_timesteps=steps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    meta = {"pipeline": env.pipeline.name, "patterns": patterns, "gpu_budget": gpu_budget, "interval_s": interval_s,
            "duration_s": duration_s, "steps": steps, "seed": seed, "hyperparameters": params,
            "train_seconds": round(time.perf_counter() - start, 1)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_meta(directory: str | Path) -> dict[str, Any]:
    """A trained model's metadata; ``ValueError`` (one line) when ``directory`` holds no model."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file() or not (directory / META_FILE).is_file():
        raise ValueError(f"{directory}: no trained model ({MODEL_FILE} and {META_FILE}); train one with kis pipeline train")
    return json.loads((directory / META_FILE).read_text())


@dataclass(frozen=True)
class PpoController:
    """A trained PPO policy as a pipeline controller (``model`` loaded once from ``directory``)."""

    directory: str
    gpu_budget: int = 12
    name: str = "ppo"
    model: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, directory: str | Path) -> PpoController:
        from stable_baselines3 import PPO

        meta = load_meta(directory)
        return cls(str(directory), int(meta["gpu_budget"]), model=PPO.load(Path(directory) / MODEL_FILE, device="cpu"))

    def initial_state(self) -> None:
        return None

    def decide(self, snapshot: PipelineSnapshot, state: None) -> tuple[PipelineDecision, None]:
        from simulator.envs.pipeline import observe

        action, _ = self.model.predict(observe(snapshot, self.gpu_budget), deterministic=True)
        deltas = [int(a) - 1 for a in action]
        wanted = {s.name: s.desired + d for s, d in zip(snapshot.stages, deltas)}
        return PipelineDecision(bound(wanted, snapshot, self.gpu_budget), (f"ppo: {deltas}",), {"action": deltas}), state
