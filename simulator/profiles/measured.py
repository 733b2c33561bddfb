"""Measured GPU profiles (the format of ../shared/gpu-profiles/*.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simulator.profiles.engines import get_engine
from simulator.profiles.shapes import ModelShape, shape_from_mapping
from simulator.profiles.specs import GpuSpec, get_gpu

TIMINGS = ("kernel_ms", "wall_ms")


@dataclass(frozen=True)
class ProfilePoint:
    """One measurement: ``tokens`` is the prompt length (prefill) or the cached context (decode)."""

    phase: str
    batch: int
    tokens: int
    kernel_ms: float
    wall_ms: float

    def ms(self, timing: str) -> float:
        return self.kernel_ms if timing == "kernel_ms" else self.wall_ms


@dataclass(frozen=True)
class MeasuredProfile:
    """A measured profile.

    :param gpu: the GPU's name as measured (``torch.cuda.get_device_name()``), an alias in :mod:`simulator.profiles.specs`.
    :param engine: the engine mode measured (:mod:`simulator.profiles.engines`); ``eager`` when the file does not say.
    :param software: versions of the software that ran (torch, transformers, vllm, CUDA, driver), as recorded.
    """

    model: str
    gpu: str
    shape: ModelShape
    points: tuple[ProfilePoint, ...]
    source: str = ""
    engine: str = "eager"
    software: tuple[tuple[str, str], ...] = ()

    def phase(self, phase: str) -> tuple[ProfilePoint, ...]:
        return tuple(p for p in self.points if p.phase == phase)

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else self.model

    def spec(self) -> GpuSpec:
        """The datasheet figures of the GPU it was measured on."""
        try:
            return get_gpu(self.gpu)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc} (the profile's 'gpu' field)") from exc


def _points(data: dict, phase: str, length_key: str, path: Path) -> list[ProfilePoint]:
    entries = data.get(phase)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: '{phase}' must be a non-empty list")
    points = []
    for i, entry in enumerate(entries):
        where = f"{path}: {phase}[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        for key in ("batch", length_key, *TIMINGS):
            if key not in entry:
                raise ValueError(f"{where} lacks '{key}'")
        try:
            batch, tokens = int(entry["batch"]), int(entry[length_key])
            kernel, wall = float(entry["kernel_ms"]), float(entry["wall_ms"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        if batch < 1 or tokens < 1 or not (kernel > 0 and wall > 0):
            raise ValueError(f"{where}: batch, {length_key} and timings must be positive")
        points.append(ProfilePoint(phase, batch, tokens, kernel, wall))
    return points


def load_profile(path: str | Path) -> MeasuredProfile:
    """Load and validate a measured profile; errors name the file, the entry and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read profile: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile must be a JSON object")
    if not isinstance(data.get("shape"), dict):
        raise ValueError(f"{path}: missing object 'shape'")
    shape = shape_from_mapping(data["shape"], str(data.get("model", path.stem)), f"{path}: shape")
    points = _points(data, "prefill", "prompt_len", path) + _points(data, "decode", "context_len", path)
    engine = str(data.get("engine", "eager"))
    try:
        get_engine(engine)
    except ValueError as exc:
        raise ValueError(f"{path}: field 'engine': {exc}") from exc
    software = data.get("software", {})
    if not isinstance(software, dict):
        raise ValueError(f"{path}: field 'software' must be an object of name -> version")
    versions = {k: str(v) for k, v in software.items()} | ({"torch": str(data["torch"])} if "torch" in data and "torch" not in software else {})
    return MeasuredProfile(str(data.get("model", path.stem)), str(data.get("gpu", "unknown")), shape, tuple(points), str(path),
                           engine, tuple(sorted(versions.items())))
