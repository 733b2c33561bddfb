"""Policy artifacts: a folder with ``policy.onnx`` and ``metadata.json``.

``policy.onnx`` takes one input named ``obs`` (float32 ``[N, OBSERVATION_SIZE]``,
built by :func:`controller.observation.build_observation`) and returns either
per-action scores (float ``[N, actions]``; the action is their argmax) or the
action index itself (integer ``[N]`` or ``[N, 1]``). ``metadata.json``::

    {"format": "kis-policy/2",
     "schema": <controller.observation.schema_description()>,
     "action": {"kind": "residual", "steps": [-1, 0, 1, 2]},     # replicas = planner's proposal + step
            or {"kind": "step", "steps": [-2, -1, 0, 1, 2]},    # replicas = current + step
            or {"kind": "target", "replicas": [1, 2, 4, 8]},    # replicas = replicas[action]
     "planner": {"target_utilization": 0.8, ...},               # the planner trained with (PlannerPolicy fields)
     "feature_range": {"features": [...], "low": [...], "high": [...], "margin": 0.1, "min_margin": 0.05},  # optional
     "capacity": <controller.capacity.CapacityProfile.to_dict()>,   # optional: used when the target gives none
     "sha256": "<hex digest of policy.onnx>",                     # optional
     "provenance": {...free-form: algorithm, workloads, seed, steps, reward, simulator profile, command}}

:func:`load_artifact` checks all of it and raises :class:`ArtifactError` (a
``ValueError``) naming the file and the problem; an artifact of an older
format or observation schema is refused with what to do. Runs on
onnxruntime, one CPU thread, one session per artifact: no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from controller.capacity import CapacityProfile
from controller.observation import CLIP, FEATURES, OBSERVATION_SIZE, SCHEMA_VERSION
from controller.policies.planner import PlannerPolicy

ARTIFACT_FORMAT = "kis-policy/2"
INPUT_NAME = "obs"
METADATA_FILE = "metadata.json"
MODEL_FILE = "policy.onnx"
#: The artifact shipped with the package: a learned policy without an ``artifact`` runs this one.
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "policies" / "default"
ActionKind = Literal["residual", "step", "target"]
ACTION_KINDS: tuple[str, ...] = ("residual", "step", "target")


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible policy artifact."""


@dataclass(frozen=True)
class ActionMap:
    """What action ``i`` means: ``residual`` (planner + values[i]), ``step`` (current + values[i]) or ``target`` (values[i])."""

    kind: ActionKind
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind must be one of {', '.join(ACTION_KINDS)}, got {self.kind!r}")
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError(f"action values must be non-empty and distinct, got {list(self.values)}")
        if self.kind == "target" and min(self.values) < 0:
            raise ValueError(f"target replicas must be >= 0, got {list(self.values)}")

    def __len__(self) -> int:
        return len(self.values)

    def replicas(self, index: int, current: int, planner: int | None) -> int | None:
        """The proposal of action ``index`` (``None`` for a residual when the planner has no proposal)."""
        value = self.values[index]
        if self.kind == "target":
            return value
        if self.kind == "step":
            return current + value
        return None if planner is None else planner + value

    def describe(self, index: int) -> str:
        value = self.values[index]
        return {"residual": f"planner {value:+d}", "step": f"step {value:+d}", "target": f"target {value}"}[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, ("replicas" if self.kind == "target" else "steps"): list(self.values)}


@dataclass(frozen=True)
class FeatureRange:
    """Per-feature bounds of the normalised observations seen in training.

    A feature is out of range when it lies more than ``margin x (high - low)``
    (at least ``min_margin``) outside ``[low, high]``.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    margin: float = 0.1
    min_margin: float = 0.05

    def __post_init__(self) -> None:
        if len(self.low) != OBSERVATION_SIZE or len(self.high) != OBSERVATION_SIZE:
            raise ValueError(f"feature range needs {OBSERVATION_SIZE} low and high bounds, got {len(self.low)} and {len(self.high)}")
        if any(not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) for lo, hi in zip(self.low, self.high)):
            raise ValueError("feature range bounds must be finite with low <= high")
        if self.margin < 0 or self.min_margin < 0:
            raise ValueError("feature range margins must be >= 0")

    def outside(self, obs: Sequence[float]) -> tuple[str, ...]:
        """Names of the features of ``obs`` that are out of range."""
        names = []
        for feature, value, lo, hi in zip(FEATURES, obs, self.low, self.high):
            slack = max(self.margin * (hi - lo), self.min_margin)
            if value < lo - slack or value > hi + slack:
                names.append(feature.name)
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.name for f in FEATURES], "low": list(self.low), "high": list(self.high), "margin": self.margin,
                "min_margin": self.min_margin}


@dataclass(frozen=True, eq=False)
class PolicyArtifact:
    """A loaded, validated artifact.

    :param path: the artifact folder.
    :param action_map: what each action index means.
    :param planner: the planner's parameters in training (:class:`~controller.policies.planner.PlannerPolicy` fields).
    :param feature_range: the training bounds of the features (``None``: no out-of-range fallback).
    :param capacity: the training cluster's capacity profile, for targets that give none.
    :param metadata: the parsed ``metadata.json``.
    :param session: the onnxruntime ``InferenceSession``.
    :param output: ``scores`` (per-action scores) or ``index`` (the action index).
    """

    path: Path
    action_map: ActionMap
    planner: dict[str, Any]
    feature_range: FeatureRange | None
    capacity: CapacityProfile | None
    metadata: dict[str, Any]
    session: Any
    output: Literal["scores", "index"] = "scores"

    @property
    def n_actions(self) -> int:
        return len(self.action_map)

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.metadata.get("provenance") or {})

    def _run(self, obs: np.ndarray) -> np.ndarray:
        batch = np.asarray(obs, dtype=np.float32).reshape(-1, OBSERVATION_SIZE)
        return np.asarray(self.session.run(None, {INPUT_NAME: batch})[0])

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """Per-action scores ``[N, actions]`` (score-output artifacts only)."""
        if self.output != "scores":
            raise ArtifactError(f"policy artifact {self.path}: the model outputs action indices, not scores")
        return self._run(obs)

    def actions(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Action indices ``[N]`` for observations ``[N, OBSERVATION_SIZE]`` (or one ``[OBSERVATION_SIZE]``).

        Deterministic (argmax) unless ``rng`` is given: then each action is sampled from the
        softmax of its scores with that generator.
        """
        out = self._run(obs)
        if self.output == "index":
            if rng is not None:
                raise ArtifactError(f"policy artifact {self.path}: stochastic actions need a model that outputs scores")
            indices = out.reshape(-1).astype(np.int64)
        elif rng is None:
            indices = out.argmax(axis=1)
        else:
            z = out - out.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            indices = (p.cumsum(axis=1) < rng.random((len(p), 1))).sum(axis=1)
            indices = np.minimum(indices, self.n_actions - 1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_actions):
            raise ArtifactError(f"policy artifact {self.path}: model returned action index outside 0..{self.n_actions - 1}")
        return indices



def _fail(path: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"policy artifact {path}: {problem}")


def _check_schema(meta_path: Path, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise _fail(meta_path, "'schema' must be the observation schema object (controller.observation.schema_description())")
    version = schema.get("version")
    if version != SCHEMA_VERSION:
        raise _fail(meta_path, f"artifact was trained with observation schema {version}; this controller speaks {SCHEMA_VERSION}: retrain or upgrade")
    features = schema.get("features")
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise _fail(meta_path, "'schema.features' must be a list of feature objects")
    names = tuple(f.get("name") for f in features)
    expected = tuple(f.name for f in FEATURES)
    if names != expected:
        extra, absent = sorted(set(map(str, names)) - set(expected)), sorted(set(expected) - set(map(str, names)))
        detail = f"unknown {extra}, absent {absent}" if extra or absent else "same names in another order"
        raise _fail(meta_path, f"feature list differs from schema {SCHEMA_VERSION} ({detail}): retrain or upgrade")
    for entry, feature in zip(features, FEATURES):
        if (entry.get("offset"), entry.get("scale")) != (feature.offset, feature.scale):
            raise _fail(meta_path, f"feature {feature.name!r} was normalised with offset={entry.get('offset')}, scale={entry.get('scale')}; "
                                   f"this controller uses offset={feature.offset}, scale={feature.scale}: retrain or upgrade")
    if schema.get("clip", CLIP) != CLIP:
        raise _fail(meta_path, f"features were clipped to {schema.get('clip')}; this controller clips to {CLIP}: retrain or upgrade")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_action(meta_path: Path, action: Any) -> ActionMap:
    if not isinstance(action, dict):
        raise _fail(meta_path, f"'action' must be an object, got {action!r}")
    kind = action.get("kind")
    key = {"residual": "steps", "step": "steps", "target": "replicas"}.get(kind) if isinstance(kind, str) else None
    if key is None:
        raise _fail(meta_path, f"action.kind must be one of {', '.join(ACTION_KINDS)}, got {kind!r}")
    values = action.get(key)
    if not isinstance(values, list) or not values or not all(_is_int(v) for v in values):
        raise _fail(meta_path, f"action.{key} must be a non-empty list of integers, got {values!r}")
    if len(set(values)) != len(values):
        raise _fail(meta_path, f"action.{key} has duplicates: {values}")
    if kind == "target" and min(values) < 0:
        raise _fail(meta_path, f"action.replicas must be >= 0, got {values}")
    return ActionMap(kind, tuple(values))  # type: ignore[arg-type]


#: Planner fields added after artifacts were first written, with the value that reproduces an artifact that
#: records its planner without them (the planner it was trained with had no such behaviour).
PLANNER_FIELDS_ADDED: dict[str, Any] = {"peak_hold_s": None}


def _check_planner(meta_path: Path, planner: Any) -> dict[str, Any]:
    if planner is None:
        return {}
    if not isinstance(planner, dict):
        raise _fail(meta_path, f"'planner' must be an object of planner parameters, got {planner!r}")
    if planner:  # an artifact records every field of its planner; one recorded before a field existed lacks it
        planner = {**{k: v for k, v in PLANNER_FIELDS_ADDED.items() if k not in planner}, **planner}
    try:
        PlannerPolicy(**planner)
    except (TypeError, ValueError) as exc:
        raise _fail(meta_path, f"planner: {exc}") from exc
    return dict(planner)


def _check_range(meta_path: Path, data: Any) -> FeatureRange | None:
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("features") != [f.name for f in FEATURES]:
        raise _fail(meta_path, "feature_range must list this schema's features in order, with low and high bounds")
    try:
        return FeatureRange(tuple(map(float, data["low"])), tuple(map(float, data["high"])), float(data.get("margin", 0.1)),
                            float(data.get("min_margin", 0.05)))
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(meta_path, f"feature_range: {exc}") from exc


def _check_capacity(meta_path: Path, data: Any) -> CapacityProfile | None:
    if data is None:
        return None
    try:
        return CapacityProfile.from_dict(data)
    except ValueError as exc:
        raise _fail(meta_path, str(exc)) from exc


def _read_metadata(folder: Path) -> tuple[Path, dict[str, Any]]:
    meta_path = folder / METADATA_FILE
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise _fail(meta_path, f"metadata is not valid JSON: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(meta_path, f"cannot read metadata: {exc}") from exc
    if not isinstance(metadata, dict):
        raise _fail(meta_path, "metadata must be a JSON object")
    return meta_path, metadata


def _session(onnx_path: Path, blob: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise _fail(onnx_path, f"corrupt or unsupported ONNX model: {exc}") from exc


def _check_model(onnx_path: Path, session: Any, n_actions: int) -> Literal["scores", "index"]:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise _fail(onnx_path, f"must have exactly one input named {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    shape, dtype = inputs[0].shape, inputs[0].type
    if dtype != "tensor(float)":
        raise _fail(onnx_path, f"input {INPUT_NAME!r} must be float32, got {dtype}")
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != OBSERVATION_SIZE):
        raise _fail(onnx_path, f"input {INPUT_NAME!r} has shape {shape}; this controller's observation is [N, {OBSERVATION_SIZE}]")
    if not outputs:
        raise _fail(onnx_path, "the model has no output")
    kind: Literal["scores", "index"] = "index" if "int" in outputs[0].type else "scores"
    if kind == "scores" and "float" not in outputs[0].type:
        raise _fail(onnx_path, f"output {outputs[0].name!r} must be float scores or integer indices, got {outputs[0].type}")
    probe = np.zeros((2, OBSERVATION_SIZE), dtype=np.float32)
    try:
        out = np.asarray(session.run(None, {INPUT_NAME: probe})[0])
    except Exception as exc:
        raise _fail(onnx_path, f"the model fails on a [2, {OBSERVATION_SIZE}] observation batch: {exc}") from exc
    if kind == "scores" and out.shape != (2, n_actions):
        raise _fail(onnx_path, f"output {outputs[0].name!r} has shape {list(out.shape)} for a batch of 2; metadata declares {n_actions} actions")
    if kind == "index" and out.size != 2:
        raise _fail(onnx_path, f"index output {outputs[0].name!r} has shape {list(out.shape)} for a batch of 2; expected [2] or [2, 1]")
    return kind


def load_artifact(path: str | Path) -> PolicyArtifact:
    """Load and validate an artifact folder (or the path of its ``metadata.json``)."""
    path = Path(path)
    folder = path.parent if path.name == METADATA_FILE else path
    if not folder.is_dir():
        raise _fail(folder, "no such directory")
    meta_path, onnx_path = folder / METADATA_FILE, folder / MODEL_FILE
    for required in (meta_path, onnx_path):
        if not required.is_file():
            raise _fail(folder, f"missing {required.name}")
    meta_path, metadata = _read_metadata(folder)
    if metadata.get("format") != ARTIFACT_FORMAT:
        schema = metadata.get("schema")
        version = schema.get("version") if isinstance(schema, dict) else None
        raise _fail(meta_path, f"format is {metadata.get('format')!r} (observation schema {version}); this controller loads "
                               f"{ARTIFACT_FORMAT!r} ({SCHEMA_VERSION}): retrain it with `kis train` or run the KIS-S version it was made for")
    _check_schema(meta_path, metadata.get("schema"))
    action_map = _check_action(meta_path, metadata.get("action"))
    planner = _check_planner(meta_path, metadata.get("planner"))
    feature_range = _check_range(meta_path, metadata.get("feature_range"))
    capacity = _check_capacity(meta_path, metadata.get("capacity"))
    if not isinstance(metadata.get("provenance", {}), dict):
        raise _fail(meta_path, "'provenance' must be an object")
    blob = onnx_path.read_bytes()
    digest = metadata.get("sha256")
    if digest is not None:
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise _fail(meta_path, f"sha256 must be 64 hex digits, got {digest!r}")
        if hashlib.sha256(blob).hexdigest() != digest.lower():
            raise _fail(onnx_path, "checksum mismatch: policy.onnx does not match metadata sha256 (corrupted or replaced)")
    session = _session(onnx_path, blob)
    output = _check_model(onnx_path, session, len(action_map))
    return PolicyArtifact(folder, action_map, planner, feature_range, capacity, metadata, session, output)
