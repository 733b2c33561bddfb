"""Training callbacks (stable-baselines3): feature ranges for the artifact, the Lagrangian SLO weight, and
evaluations on the same episodes at every checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

from controller.artifact import FeatureRange


class SameEpisodesEvalCallback(EvalCallback):
    """EvalCallback whose every evaluation replays the same episodes (the eval env reseeded first), so that
    checkpoints are compared on equal traffic and the best one is chosen for its policy, not its luck."""

    def __init__(self, *args: Any, eval_seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_seed = eval_seed

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.eval_env.seed(self.eval_seed)
        return super()._on_step()


class FeatureRangeCallback(BaseCallback):
    """Keeps the per-feature low and high of every observation seen in training (for the out-of-range fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    def _on_step(self) -> bool:
        obs = np.asarray(self.locals["new_obs"], dtype=np.float64)
        low, high = obs.min(axis=0), obs.max(axis=0)
        self.low = low if self.low is None else np.minimum(self.low, low)
        self.high = high if self.high is None else np.maximum(self.high, high)
        return True

    def feature_range(self) -> FeatureRange | None:
        if self.low is None or self.high is None:
            return None
        return FeatureRange(tuple(float(v) for v in self.low), tuple(float(v) for v in self.high))


class LagrangianCallback(BaseCallback):
    """Adapts the envs' SLO weight after each rollout towards the target share of SLO misses."""

    def __init__(self, section: Any, initial: float) -> None:
        super().__init__()
        self.section = section
        self.weight = max(float(initial), section.min_weight)
        self.share: float | None = None
        self._misses = 0
        self._completed = 0

    def _on_training_start(self) -> None:
        self.training_env.env_method("set_slo_weight", self.weight)

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            self._misses += int(info.get("slo_misses", 0))
            self._completed += int(info.get("completed", 0))
        return True

    def _on_rollout_end(self) -> None:
        s = self.section
        if self._completed:
            share = self._misses / self._completed
            self.share = share if self.share is None else self.share + s.smoothing * (share - self.share)
            excess = float(np.clip(self.share / (1.0 - s.target_attainment) - 1.0, -1.0, 1.0))
            self.weight = float(np.clip(self.weight * np.exp(s.lr * excess), s.min_weight, s.max_weight))
            self.training_env.env_method("set_slo_weight", self.weight)
            self.logger.record("train/slo_miss_share", share)
        self.logger.record("train/slo_weight", self.weight)
        self._misses = self._completed = 0
