"""Tabular Q-learning autoscaler.

The state is (token-load bin, desired replicas): token load is prompt plus
generated tokens per second per ready replica, cut into bins; the action is
the environment's replica step (train it on an env with ``action_mode="step"``).
:meth:`QTable.as_policy` runs the greedy table through the shared ``decide``. Epsilon-greedy exploration decays linearly
over the episodes. Each episode logs its reward, SLO misses and GPU-hours.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext

#: Default bin edges of token load (tokens/s per ready replica).
DEFAULT_LOAD_EDGES: tuple[float, ...] = (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000)


@dataclass(frozen=True)
class QConfig:
    """:param episodes: training episodes. :param alpha: learning rate. :param gamma: discount.
    :param epsilon_start: exploration at the first episode. :param epsilon_end: at the last.
    :param load_edges: token-load bin edges. :param seed: exploration seed."""

    episodes: int = 200
    alpha: float = 0.1
    gamma: float = 0.95
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    load_edges: tuple[float, ...] = DEFAULT_LOAD_EDGES
    seed: int = 0

    def epsilon(self, episode: int) -> float:
        if self.episodes <= 1:
            return self.epsilon_end
        frac = min(1.0, episode / (self.episodes - 1))
        return self.epsilon_start + (self.epsilon_end - self.epsilon_start) * frac


def token_load(snapshot: Mapping[str, float]) -> float:
    """Prompt plus generated tokens per second per ready replica (0 when unknown)."""
    ready = max(snapshot.get(sig.REPLICAS_READY, 1.0), 1.0)
    total = snapshot.get("prompt_token_rate", math.nan) + snapshot.get("generation_token_rate", math.nan)
    return total / ready if math.isfinite(total) else 0.0


@dataclass
class QTable:
    """Q-values indexed by (load bin, replicas, action)."""

    load_edges: tuple[float, ...]
    max_replicas: int
    steps: tuple[int, ...]
    values: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.values is None:
            self.values = np.zeros((len(self.load_edges) + 1, self.max_replicas + 1, len(self.steps)))

    def state(self, snapshot: Mapping[str, float], desired: int) -> tuple[int, int]:
        return int(np.searchsorted(self.load_edges, token_load(snapshot), side="right")), min(max(desired, 0), self.max_replicas)

    def greedy(self, state: tuple[int, int]) -> int:
        return int(np.argmax(self.values[state]))

    def save(self, path: Path) -> None:
        np.savez(path, values=self.values, load_edges=np.array(self.load_edges), steps=np.array(self.steps), max_replicas=self.max_replicas)

    @classmethod
    def load(cls, path: Path) -> QTable:
        data = np.load(path)
        return cls(tuple(data["load_edges"].tolist()), int(data["max_replicas"]), tuple(int(s) for s in data["steps"]), data["values"])

    def as_policy(self) -> QTablePolicy:
        """The greedy table as a :class:`~controller.policies.base.Policy`, to run through ``decide`` like any other."""
        return QTablePolicy(self)


@dataclass(frozen=True, eq=False)
class QTablePolicy:
    """Greedy actions of a :class:`QTable`: the current replicas plus the best step."""

    table: QTable
    name: str = "qlearning"

    required_signals: ClassVar[tuple[str, ...]] = ("prompt_token_rate", "generation_token_rate")

    def initial_state(self) -> None:
        return None

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: None) -> tuple[Proposal, None]:
        step = self.table.steps[self.table.greedy(self.table.state(snapshot, ctx.current_replicas))]
        return Proposal(ctx.current_replicas + step, (f"greedy step {step:+d} at load {token_load(snapshot):.0f} tokens/s/replica",)), None


@dataclass(frozen=True)
class EpisodeLog:
    episode: int
    epsilon: float
    reward: float
    slo_misses: int
    gpu_hours: float
    steps: int


def train_qlearning(env, config: QConfig, *, on_episode: Callable[[EpisodeLog], None] | None = None) -> tuple[QTable, list[EpisodeLog]]:
    """Q-learning on an ``AutoscaleEnv`` (it exposes ``last_snapshot``, ``steps`` and ``max_replicas``)."""
    rng = np.random.default_rng(config.seed)
    table = QTable(config.load_edges, env.max_replicas, tuple(env.steps))
    logs: list[EpisodeLog] = []
    for episode in range(config.episodes):
        eps = config.epsilon(episode)
        env.reset(seed=int(rng.integers(2**31)))
        state = table.state(env.last_snapshot, env.initial_replicas)
        total = 0.0
        misses = 0
        cost_gpu_s = 0.0
        n = 0
        while True:
            action = int(rng.integers(len(table.steps))) if rng.random() < eps else table.greedy(state)
            _, reward, terminated, truncated, info = env.step(action)
            nxt = table.state(env.last_snapshot, info["desired"])
            target = reward if terminated else reward + config.gamma * table.values[nxt].max()
            table.values[state + (action,)] += config.alpha * (target - table.values[state + (action,)])
            state = nxt
            total += reward
            misses += int(info["slo_misses"])
            cost_gpu_s += info["gpus_billed"] * env.interval_s
            n += 1
            if terminated or truncated:
                break
        log = EpisodeLog(episode, eps, total, misses, cost_gpu_s / 3600.0, n)
        logs.append(log)
        if on_episode:
            on_episode(log)
    return table, logs


def write_episode_log(logs: Sequence[EpisodeLog], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "epsilon", "reward", "slo_misses", "gpu_hours", "steps"])
        for log in logs:
            writer.writerow([log.episode, f"{log.epsilon:.4f}", f"{log.reward:.6f}", log.slo_misses, f"{log.gpu_hours:.4f}", log.steps])
