"""Pipeline specifications: a chain of serving stages, built-ins and YAML.

A stage is one Deployment: an LLM on the continuous-batching engine
(``llm``), the prefill or decode pool of disaggregated serving (``prefill``,
``decode``), or a non-LLM service (``batch``: an embedder, a reranker, a
speech model) whose batch of ``n`` requests takes ``base_s + per_item_s * n``.
Prices come from the GPU spec table unless a stage sets its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from simulator.profiles.specs import get_gpu

STAGE_KINDS = ("llm", "prefill", "decode", "batch")
LLM_KINDS = ("llm", "prefill", "decode")


class PipelineSpecError(ValueError):
    """A pipeline spec that cannot run; the message is one line: ``where: what is wrong``."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline.

    :param name: unique in the pipeline.
    :param kind: ``llm``, ``prefill``, ``decode`` or ``batch``.
    :param gpu: GPU type of each replica (a name of :mod:`simulator.profiles.specs`).
    :param model: model shape served by an LLM stage.
    :param base_s: fixed time of one batch (``batch`` stages).
    :param per_item_s: time added per request in the batch (``batch`` stages).
    :param max_batch: most requests in one batch (``batch`` stages).
    :param cold_start_s: time from asking for a replica until it serves.
    :param min_replicas: fewest replicas a controller may set.
    :param max_replicas: most replicas a controller may set.
    :param initial_replicas: replicas ready at ``t = 0``.
    :param hourly_price: USD per replica-hour; ``None`` takes the GPU's list price.
    """

    name: str
    kind: str
    gpu: str = "H100"
    model: str = "llama-8b"
    base_s: float = 0.0
    per_item_s: float = 0.0
    max_batch: int = 1
    cold_start_s: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 8
    initial_replicas: int = 1
    hourly_price: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise PipelineSpecError("a stage needs a name")
        where = f"{self.name}"
        if self.kind not in STAGE_KINDS:
            raise PipelineSpecError(f"{where}: unknown kind {self.kind!r}; choose one of {', '.join(STAGE_KINDS)}")
        try:
            get_gpu(self.gpu)
        except ValueError as exc:
            raise PipelineSpecError(f"{where}: {exc}") from None
        if self.kind == "batch":
            if not (self.base_s >= 0 and self.per_item_s >= 0 and self.base_s + self.per_item_s > 0):
                raise PipelineSpecError(f"{where}: a batch stage needs base_s >= 0, per_item_s >= 0 and base_s + per_item_s > 0")
            if self.max_batch < 1:
                raise PipelineSpecError(f"{where}: max_batch must be >= 1, got {self.max_batch}")
        else:
            from simulator.profiles.shapes import load_shape

            try:
                load_shape(self.model)
            except (ValueError, OSError) as exc:
                raise PipelineSpecError(f"{where}: {exc}") from None
        if not (self.cold_start_s >= 0 and math.isfinite(self.cold_start_s)):
            raise PipelineSpecError(f"{where}: cold_start_s must be a finite number >= 0, got {self.cold_start_s}")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise PipelineSpecError(f"{where}: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                                    f"got {self.min_replicas}, {self.max_replicas}")
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise PipelineSpecError(f"{where}: initial_replicas {self.initial_replicas} outside [{self.min_replicas}, {self.max_replicas}]")
        if self.hourly_price is not None and not self.hourly_price >= 0:
            raise PipelineSpecError(f"{where}: hourly_price must be >= 0, got {self.hourly_price}")

    @property
    def price_per_hour(self) -> float:
        """USD per replica-hour (one GPU per replica)."""
        return self.hourly_price if self.hourly_price is not None else get_gpu(self.gpu).hourly_price_usd

    @property
    def is_llm(self) -> bool:
        return self.kind in LLM_KINDS


@dataclass(frozen=True)
class PipelineSpec:
    """A chain of stages; a request passes through them in order.

    :param name: label for tables.
    :param stages: in request order.
    :param kv_transfer_s: time to move a request's KV cache from a ``prefill`` stage to the ``decode`` stage after it.
    :param slo_p99_s: end-to-end latency bound of a request (the P99 target).
    """

    name: str
    stages: tuple[StageSpec, ...]
    kv_transfer_s: float = 0.0
    slo_p99_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.stages:
            raise PipelineSpecError(f"{self.name}: a pipeline needs at least one stage")
        names = [s.name for s in self.stages]
        for name in names:
            if names.count(name) > 1:
                raise PipelineSpecError(f"{name}: stage names must be unique")
        for i, stage in enumerate(self.stages):
            after = self.stages[i + 1] if i + 1 < len(self.stages) else None
            before = self.stages[i - 1] if i > 0 else None
            if stage.kind == "prefill" and (after is None or after.kind != "decode"):
                raise PipelineSpecError(f"{stage.name}: a prefill stage must be followed by a decode stage")
            if stage.kind == "decode" and (before is None or before.kind != "prefill"):
                raise PipelineSpecError(f"{stage.name}: a decode stage must follow a prefill stage")
        if not (self.kv_transfer_s >= 0 and math.isfinite(self.kv_transfer_s)):
            raise PipelineSpecError(f"{self.name}: kv_transfer_s must be a finite number >= 0, got {self.kv_transfer_s}")
        if self.kv_transfer_s > 0 and not any(s.kind == "prefill" for s in self.stages):
            raise PipelineSpecError(f"{self.name}: kv_transfer_s needs a prefill stage followed by a decode stage")
        if not self.slo_p99_s > 0:
            raise PipelineSpecError(f"{self.name}: slo_p99_s must be > 0, got {self.slo_p99_s}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"pipeline {self.name} has no stage {name!r}; stages: {', '.join(self.names)}")


def _rag() -> PipelineSpec:
    return PipelineSpec("rag", (
        StageSpec("embedder", "batch", gpu="L4", base_s=0.05, per_item_s=0.0125, max_batch=16, cold_start_s=30.0),
        StageSpec("reranker", "batch", gpu="L4", base_s=0.04, per_item_s=0.045, max_batch=8, cold_start_s=30.0),
        StageSpec("llm", "llm", gpu="H100", model="llama-8b", cold_start_s=90.0),
    ), slo_p99_s=8.0)


def _speech() -> PipelineSpec:
    return PipelineSpec("speech", (
        StageSpec("asr", "batch", gpu="L4", base_s=0.1, per_item_s=0.05, max_batch=8, cold_start_s=40.0),
        StageSpec("llm", "llm", gpu="H100", model="llama-8b", cold_start_s=90.0),
        StageSpec("tts", "batch", gpu="L4", base_s=0.05, per_item_s=0.08, max_batch=8, cold_start_s=40.0),
    ), slo_p99_s=8.0)


def _disagg() -> PipelineSpec:
    return PipelineSpec("disagg", (
        StageSpec("prefill", "prefill", gpu="H100", model="llama-8b", cold_start_s=90.0),
        StageSpec("decode", "decode", gpu="H100", model="llama-8b", cold_start_s=90.0),
    ), kv_transfer_s=0.02, slo_p99_s=8.0)


BUILTINS = {"rag": _rag, "speech": _speech, "disagg": _disagg}


def builtin_pipeline(name: str) -> PipelineSpec:
    """A built-in pipeline by name: ``rag``, ``speech``, ``disagg``."""
    if name not in BUILTINS:
        raise PipelineSpecError(f"{name}: unknown pipeline; built-ins: {', '.join(BUILTINS)} (or a YAML file)")
    return BUILTINS[name]()


_STAGE_FIELDS = {f.name for f in fields(StageSpec)}
_PIPELINE_KEYS = {"name", "stages", "kv_transfer_s", "slo_p99_s"}


def _stage_from(raw: Any, index: int, where: str) -> StageSpec:
    label = f"{where}:stage #{index + 1}"
    if not isinstance(raw, dict):
        raise PipelineSpecError(f"{label}: expected a mapping, got {type(raw).__name__}")
    if "name" in raw:
        label = f"{where}:{raw['name']}"
    unknown = sorted(set(map(str, raw)) - _STAGE_FIELDS)
    if unknown:
        raise PipelineSpecError(f"{label}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_STAGE_FIELDS))}")
    for key in ("name", "kind"):
        if key not in raw:
            raise PipelineSpecError(f"{label}: missing {key!r}")
    values = dict(raw)
    try:
        for key in ("base_s", "per_item_s", "cold_start_s"):
            if key in values:
                values[key] = float(values[key])
        for key in ("max_batch", "min_replicas", "max_replicas", "initial_replicas"):
            if key in values:
                if isinstance(values[key], bool) or float(values[key]) != int(values[key]):
                    raise ValueError(f"{key} must be an integer, got {values[key]!r}")
                values[key] = int(values[key])
        if values.get("hourly_price") is not None:
            values["hourly_price"] = float(values["hourly_price"])
        for key in ("name", "kind", "gpu", "model"):
            if key in values:
                values[key] = str(values[key])
    except (TypeError, ValueError) as exc:
        raise PipelineSpecError(f"{label}: {exc}") from None
    values.setdefault("initial_replicas", max(1, int(values.get("min_replicas", 1))))
    try:
        return StageSpec(**values)
    except PipelineSpecError as exc:
        raise PipelineSpecError(f"{where}:{exc}") from None


def pipeline_from_dict(raw: Any, where: str = "<pipeline>") -> PipelineSpec:
    """A pipeline from parsed YAML; errors name ``where`` and the stage."""
    if not isinstance(raw, dict):
        raise PipelineSpecError(f"{where}: expected a mapping with 'stages', got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - _PIPELINE_KEYS)
    if unknown:
        raise PipelineSpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_PIPELINE_KEYS))}")
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages:
        raise PipelineSpecError(f"{where}: 'stages' must be a non-empty list")
    built = tuple(_stage_from(s, i, where) for i, s in enumerate(stages))
    try:
        kv = float(raw.get("kv_transfer_s", 0.0))
        slo = float(raw.get("slo_p99_s", 10.0))
    except (TypeError, ValueError) as exc:
        raise PipelineSpecError(f"{where}: {exc}") from None
    try:
        return PipelineSpec(str(raw.get("name", Path(where).stem)), built, kv, slo)
    except PipelineSpecError as exc:
        raise PipelineSpecError(f"{where}:{exc}") from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """A pipeline from a YAML file; every problem is one :class:`PipelineSpecError` line, ``file:stage: what``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PipelineSpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PipelineSpecError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    return pipeline_from_dict(raw, str(path))


def resolve_pipeline(name_or_path: str) -> PipelineSpec:
    """A built-in by name, else a YAML file."""
    if name_or_path in BUILTINS:
        return builtin_pipeline(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).exists():
        return load_pipeline(name_or_path)
    return builtin_pipeline(name_or_path)
