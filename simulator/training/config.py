"""Training configuration: a YAML file validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.slo import SLO
from simulator.cluster.file import ClusterSection, load_cluster_file
from simulator.workloads.randomized import DEFAULT_SHAPES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RandomizedSection(_Strict):
    """Ranges of randomised training traffic (:class:`simulator.workloads.randomized.RandomizedSpec`)."""

    rate: tuple[float, float] = (0.25, 55.0)
    prompt_mean: tuple[float, float] = (64.0, 8192.0)
    output_mean: tuple[float, float] = (8.0, 512.0)
    prompt_max: int = Field(32768, ge=1)
    output_max: int = Field(4096, ge=1)
    burstiness: tuple[float, float] = (0.05, 0.6)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    combine: float = Field(0.4, ge=0, le=1)


class LagrangianSection(_Strict):
    """Adapt the SLO weight so that the share of (avoidable) SLO misses settles at ``1 - target_attainment``.

    After each rollout the miss share is smoothed (``smoothing``, an exponential moving average: one
    overloaded episode must not swing the weight), then ``w <- w * exp(lr * clip(share / (1 - target) - 1, -1, 1))``,
    kept within ``[min_weight, max_weight]``."""

    target_attainment: float = Field(0.99, gt=0, lt=1)
    lr: float = Field(0.05, gt=0)
    smoothing: float = Field(0.2, gt=0, le=1)
    min_weight: float = Field(0.01, gt=0)
    max_weight: float = Field(20.0, gt=0)


class EnvSection(_Strict):
    """Episodes: workloads, replica bounds, action, planner, guardrails, reward, randomisation."""

    workloads: tuple[str, ...] = ("ramp", "periodic", "random", "spike", "llm-day")
    randomized: RandomizedSection | None = None
    episode_duration_s: float = Field(3600.0, gt=0)
    interval_s: float = Field(15.0, gt=0)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(8, ge=1)
    initial_replicas: int = Field(2, ge=1)
    initial_replicas_range: tuple[int, int] | None = None
    action_mode: Literal["residual", "step", "target"] = "residual"
    steps: tuple[int, ...] = (-2, -1, 0, 1, 2)
    planner: dict[str, Any] = Field(default_factory=dict)
    behavior: dict[str, Any] = Field(default_factory=dict)
    cost_weight: float = Field(1.0, ge=0)
    slo_weight: float = Field(0.2, ge=0)
    lagrangian: LagrangianSection | None = None
    rate_scale: tuple[float, float] = (0.5, 1.5)
    cold_start_scale: tuple[float, float] = (0.7, 1.5)
    cold_start_s: tuple[float, float] | None = None
    gpus: tuple[str, ...] = ()
    peak_load: tuple[float, float] | None = None
    slo_ttft_ms: float = Field(500.0, gt=0)
    slo_tpot_ms: float = Field(50.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> EnvSection:
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("need min_replicas <= initial_replicas <= max_replicas")
        if self.action_mode != "target" and 0 not in self.steps:
            raise ValueError("steps must include 0")
        return self

    @property
    def slo(self) -> SLO:
        return SLO(self.slo_ttft_ms / 1000.0, self.slo_tpot_ms / 1000.0)


class EvalSection(_Strict):
    """Periodic evaluation on held-out seeds of the training workloads."""

    every_steps: int = Field(20_000, ge=1)
    episodes: int = Field(3, ge=1)


class RolloutSection(_Strict):
    """``algo: rollout``: one step of policy iteration on the planner (:mod:`simulator.training.rollout`).

    At every ``every``-th step of ``episodes`` randomised episodes following the planner, the simulation is
    copied once per residual step; each copy takes its step, then the planner's, for one cold start plus
    ``lookahead_s``. The label is the step with the lowest ``cost + miss_weight x avoidable misses`` (USD),
    or with ``miss_share`` the cheapest step whose branch misses at most that share of its requests (the SLO
    as a constraint); the zero step unless another clearly beats it (``margin``). An MLP (``net_arch``)
    learns it by cross-entropy for ``epochs`` passes. Each of ``rounds`` > 1 draws ``episodes`` more that follow
    the previous round's network (the next step of policy iteration) and fits again on every sample."""

    episodes: int = Field(64, ge=1)
    rounds: int = Field(1, ge=1)
    first_seed: int = 3000
    every: int = Field(4, ge=1)
    lookahead_s: float = Field(600.0, ge=0)
    miss_weight: float = Field(0.1, ge=0)
    miss_share: float | None = Field(None, ge=0, lt=1)
    margin: float = Field(0.05, ge=0)
    epochs: int = Field(60, ge=1)


class TrainConfig(_Strict):
    """One training run. ``hyperparameters`` go to the algorithm's constructor."""

    algo: Literal["ppo", "a2c", "dqn", "qlearning", "rollout"] = "ppo"
    total_steps: int = Field(200_000, ge=1)
    seed: int = 0
    n_envs: int = Field(8, ge=1)
    #: How the ``n_envs`` environments step: ``dummy`` one after another in the trainer's process, ``subproc`` one process each.
    vec_env: Literal["dummy", "subproc"] = "dummy"
    net_arch: tuple[int, ...] = (64, 64)
    #: added to the logit of the zero step at the start (PPO/A2C): a residual policy starts close to the planner
    initial_zero_bias: float = Field(0.0, ge=0)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    cluster: ClusterSection = ClusterSection()
    env: EnvSection = EnvSection()
    eval: EvalSection = EvalSection()
    rollout: RolloutSection = RolloutSection()

    @model_validator(mode="after")
    def _rollout_needs_steps(self) -> TrainConfig:
        if self.algo == "rollout" and self.env.action_mode == "target":
            raise ValueError("algo rollout branches on steps around a proposal: needs env.action_mode residual or step")
        return self


def validation_problems(exc: ValidationError) -> str:
    """Each problem of ``exc`` as ``field.path: message`` (a whole-config problem without the path), joined by ``; ``."""
    def one(e) -> str:
        msg = e["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in e["loc"])
        return f"{where}: {msg}" if where else msg

    return "; ".join(one(e) for e in exc.errors())


def load_train_config(path: Path, overrides: dict[str, Any] | None = None, cluster: Path | None = None) -> TrainConfig:
    """Read and validate a YAML training config; errors name the file and the field.

    ``cluster`` (a cluster YAML, e.g. from ``kis calibrate``) replaces the config's ``cluster`` section.
    """
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read training config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a mapping, got {type(raw).__name__}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid training config: {validation_problems(exc)}") from exc
    section = load_cluster_file(cluster) if cluster is not None else config.cluster.relative_to(path.parent)
    return config.model_copy(update={"cluster": section})
