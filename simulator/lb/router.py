"""A trained load-balancing agent as a cluster :class:`~simulator.cluster.router.Router`.

It rebuilds ``kis/LoadBalance-v0``'s observation from the replicas' engines
(its own request history for the request features), so a router trained in
the load-balancing environment routes inside the autoscaling simulator. It
was trained for a fixed number of servers: with another number of ready
replicas it falls back to least-loaded routing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulator.cluster.router import LeastLoaded, ReplicaView
from simulator.lb.env import SLO_S, WINDOWS


class LearnedRouter:
    name = "learned"

    def __init__(self, model, median: float = 1200.0, iqr: float = 1000.0) -> None:
        self.model = model
        self.n = int(model.action_space.n)
        self.median, self.iqr = median, iqr
        self.history: deque[float] = deque(maxlen=max(WINDOWS) + 1)
        self.fallback = LeastLoaded()

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        from stable_baselines3 import A2C, DQN, PPO

        path = Path(path)
        algo = path.stem.split("-")[0]
        if algo not in ("ppo", "a2c", "dqn"):
            raise ValueError(f"{path}: name must start with ppo-, a2c- or dqn- (as `kis lb train` writes it)")
        return cls({"ppo": PPO, "a2c": A2C, "dqn": DQN}[algo].load(path, device="cpu"))

    def _scaled(self, x: float) -> float:
        return float(np.clip((x - self.median) / self.iqr, -10, 10))

    def observation(self, replicas: Sequence[ReplicaView], total: float) -> np.ndarray:
        history = list(self.history) or [total]
        features = [self._scaled(total)]
        for window in WINDOWS:
            recent = history[-window:]
            features += [self._scaled(float(np.mean(recent))), float(np.clip(np.std(recent) / self.iqr, 0, 10))]
        features += [self._scaled(history[-1]), 0.0, 0.0]
        for replica in replicas:
            engine = replica.engine  # type: ignore[attr-defined]
            concurrency = engine.config.max_num_seqs
            tokens_per_s = 5000.0 * replica.speed
            features += [min(10.0, engine.num_waiting / concurrency), min(10.0, engine.outstanding_tokens / (tokens_per_s * SLO_S)), 0.0,
                         engine.num_running / concurrency]
        return np.asarray(features, dtype=np.float32)

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int:
        total = float(prompt_tokens + output_tokens)
        if len(replicas) != self.n:
            choice = self.fallback.choose(replicas, prompt_tokens, output_tokens)
        else:
            choice = int(self.model.predict(self.observation(replicas, total), deterministic=True)[0])
        self.history.append(total)
        return choice
