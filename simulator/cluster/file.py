"""A cluster described in YAML: the ``cluster:`` section of a training config, or a file of its own.

``kis calibrate`` writes one; ``kis simulate --cluster``, ``kis evaluate --cluster``
and ``kis train --cluster`` read it. Paths in ``calibration`` are relative to
the file that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.profiles.engines import get_engine


class ClusterSection(BaseModel):
    """One node pool serving one model, its engine and calibration, and pod start-up.

    :param calibration: a calibration JSON (``kis profile fit``, ``kis calibrate``) or measured
        profiles to calibrate on; empty: the shipped calibration.
    :param lifecycle_jitter: relative spread of each start-up duration (uniform).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str = "H100"
    model: str = "llama-8b"
    engine: str = "paged"
    timing: Literal["kernel", "wall"] = "kernel"
    calibration: tuple[str, ...] = ()
    gpus_per_node: int = Field(8, ge=1)
    max_nodes: int = Field(2, ge=1)
    provisioning_delay_s: float = Field(180.0, ge=0)
    image_pull_s: float = Field(30.0, ge=0)
    image_pull_cached_s: float = Field(2.0, ge=0)
    model_load_s: float = Field(55.0, ge=0)
    lifecycle_jitter: float = Field(0.2, ge=0, lt=1)
    router: str = "least_connections"

    @field_validator("calibration", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        return get_engine(value).name

    def lifecycle(self) -> PodLifecycle:
        return PodLifecycle(image_pull_s=self.image_pull_s, image_pull_cached_s=self.image_pull_cached_s,
                            model_load_s=self.model_load_s, jitter=self.lifecycle_jitter)

    def build(self, *, initial_nodes: int = 1, max_nodes: int | None = None) -> ClusterConfig:
        nodes = max(max_nodes or self.max_nodes, initial_nodes)
        return ClusterConfig(
            pools=(NodePool(name=self.gpu.lower(), gpu=self.gpu, gpus_per_node=self.gpus_per_node, initial_nodes=initial_nodes,
                            max_nodes=nodes, provisioning_delay_s=self.provisioning_delay_s),),
            model=self.model,
            timing=self.timing,
            engine=self.engine,
            calibration=self.calibration,
            router=self.router,
            lifecycle=self.lifecycle(),
        )

    def relative_to(self, folder: Path) -> ClusterSection:
        """Calibration paths resolved against ``folder`` (absolute ones kept)."""
        return self.model_copy(update={"calibration": tuple(str(folder / p) for p in self.calibration)})


def override_section(section: ClusterSection, values: dict[str, object]) -> ClusterSection:
    """``section`` with the given fields replaced (``None`` values ignored); errors as one line."""
    try:
        return ClusterSection.model_validate(section.model_dump() | {k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from exc


def load_cluster_file(path: str | Path) -> ClusterSection:
    """Read and validate a cluster YAML; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read cluster file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a cluster file must be a mapping, got {type(raw).__name__}")
    raw = raw.get("cluster", raw) if set(raw) == {"cluster"} else raw
    try:
        section = ClusterSection.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: invalid cluster file: {problems}") from exc
    section = section.relative_to(path.parent)
    for source in section.calibration:
        if not Path(source).is_file():
            raise ValueError(f"{path}: calibration: no such file {source}")
    return section


def write_cluster_file(section: ClusterSection, path: Path, comment: str = "") -> Path:
    """Write ``section`` as YAML (calibration paths as given, relative to ``path``'s folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = section.model_dump()
    data["calibration"] = list(data["calibration"])
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path
