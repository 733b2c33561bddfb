"""Training configuration: a YAML file validated with pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.slo import SLO
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSection(_Strict):
    """The simulated cluster the policy trains on."""

    gpu: str = "H100"
    model: str = "llama-8b"
    timing: Literal["kernel", "wall"] = "kernel"
    gpus_per_node: int = Field(8, ge=1)
    max_nodes: int = Field(2, ge=1)
    provisioning_delay_s: float = Field(180.0, ge=0)
    image_pull_s: float = Field(30.0, ge=0)
    model_load_s: float = Field(55.0, ge=0)
    router: str = "least_connections"

    def build(self) -> ClusterConfig:
        return ClusterConfig(
            pools=(NodePool(name=self.gpu.lower(), gpu=self.gpu, gpus_per_node=self.gpus_per_node, initial_nodes=1,
                            max_nodes=self.max_nodes, provisioning_delay_s=self.provisioning_delay_s),),
            model=self.model,
            timing=self.timing,
            router=self.router,
            lifecycle=PodLifecycle(image_pull_s=self.image_pull_s, model_load_s=self.model_load_s),
        )


class EnvSection(_Strict):
    """Episodes: workloads, replica bounds, action, reward, randomisation."""

    workloads: tuple[str, ...] = ("ramp", "periodic", "random", "spike", "llm-day")
    episode_duration_s: float = Field(3600.0, gt=0)
    interval_s: float = Field(15.0, gt=0)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(8, ge=1)
    initial_replicas: int = Field(2, ge=1)
    steps: tuple[int, ...] = (-2, -1, 0, 1, 2)
    cost_weight: float = Field(1.0, ge=0)
    slo_weight: float = Field(0.2, ge=0)
    rate_scale: tuple[float, float] = (0.5, 1.5)
    cold_start_scale: tuple[float, float] = (0.7, 1.5)
    slo_ttft_ms: float = Field(500.0, gt=0)
    slo_tpot_ms: float = Field(50.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> EnvSection:
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("need min_replicas <= initial_replicas <= max_replicas")
        if 0 not in self.steps:
            raise ValueError("steps must include 0")
        return self

    @property
    def slo(self) -> SLO:
        return SLO(self.slo_ttft_ms / 1000.0, self.slo_tpot_ms / 1000.0)


class EvalSection(_Strict):
    """Periodic evaluation on held-out seeds of the training workloads."""

    every_steps: int = Field(20_000, ge=1)
    episodes: int = Field(3, ge=1)


class TrainConfig(_Strict):
    """One training run. ``hyperparameters`` go to the algorithm's constructor."""

    algo: Literal["ppo", "a2c", "dqn", "qlearning"] = "ppo"
    total_steps: int = Field(200_000, ge=1)
    seed: int = 0
    n_envs: int = Field(8, ge=1)
    net_arch: tuple[int, ...] = (64, 64)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    cluster: ClusterSection = ClusterSection()
    env: EnvSection = EnvSection()
    eval: EvalSection = EvalSection()


def load_train_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML training config; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read training config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a mapping, got {type(raw).__name__}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: invalid training config: {problems}") from exc
