"""Policy artifacts: a folder with ``policy.onnx`` and ``metadata.json``.

``policy.onnx`` maps ``obs`` (float32 ``[N, features]``) to per-action scores
(``[N, actions]``); the action is their argmax. ``metadata.json``::

    {"format": "kis-policy/1",
     "schema": <controller.observation.schema_description()>,
     "action": {"kind": "step", "steps": [-2, -1, 0, 1, 2]},
     "observation_context": {"max_replicas": 8},
     "sha256": "<of policy.onnx>",
     "provenance": {...algorithm, workloads, seed, steps, reward weights, engine profile...}}

:func:`load_artifact` checks all of it and raises :class:`ArtifactError`
naming the file and the problem. Runs on onnxruntime: no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.observation import FEATURE_NAMES, OBSERVATION_SIZE, SCHEMA_VERSION

ARTIFACT_FORMAT = "kis-policy/1"


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible policy artifact."""


@dataclass(frozen=True)
class PolicyArtifact:
    path: Path
    steps: tuple[int, ...]
    max_replicas: int
    metadata: dict[str, Any]
    session: Any

    def scores(self, obs: np.ndarray) -> np.ndarray:
        batch = np.asarray(obs, dtype=np.float32).reshape(-1, OBSERVATION_SIZE)
        return self.session.run(None, {self.session.get_inputs()[0].name: batch})[0]

    def actions(self, obs: np.ndarray) -> np.ndarray:
        return self.scores(obs).argmax(axis=1)


def _fail(path: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"policy artifact {path}: {problem}")


def load_artifact(path: str | Path) -> PolicyArtifact:
    """Load and validate an artifact folder (or its ``metadata.json``)."""
    import onnxruntime as ort

    path = Path(path)
    folder = path.parent if path.name == "metadata.json" else path
    meta_path, onnx_path = folder / "metadata.json", folder / "policy.onnx"
    for required in (meta_path, onnx_path):
        if not required.is_file():
            raise _fail(folder, f"missing {required.name}")
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(meta_path, f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise _fail(meta_path, "metadata must be a JSON object")
    if metadata.get("format") != ARTIFACT_FORMAT:
        raise _fail(meta_path, f"format is {metadata.get('format')!r}, expected {ARTIFACT_FORMAT!r}")
    schema = metadata.get("schema") or {}
    version = schema.get("version")
    if version != SCHEMA_VERSION:
        raise _fail(meta_path, f"artifact was trained with observation schema {version!r}; this controller speaks {SCHEMA_VERSION!r}: retrain the policy or use a matching controller version")
    names = tuple(f.get("name") for f in schema.get("features", []))
    if names != FEATURE_NAMES:
        raise _fail(meta_path, f"feature list differs from schema {SCHEMA_VERSION} (artifact: {list(names)})")
    action = metadata.get("action") or {}
    steps = action.get("steps")
    if action.get("kind") != "step" or not isinstance(steps, list) or not steps or not all(isinstance(s, int) for s in steps):
        raise _fail(meta_path, f"action must be {{'kind': 'step', 'steps': [ints]}}, got {action!r}")
    max_replicas = (metadata.get("observation_context") or {}).get("max_replicas")
    if not isinstance(max_replicas, int) or max_replicas < 1:
        raise _fail(meta_path, f"observation_context.max_replicas must be a positive integer, got {max_replicas!r}")
    blob = onnx_path.read_bytes()
    digest = metadata.get("sha256")
    if digest is not None and hashlib.sha256(blob).hexdigest() != digest:
        raise _fail(onnx_path, "checksum mismatch: policy.onnx does not match metadata sha256")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise _fail(onnx_path, f"cannot load ONNX model: {exc}") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].shape[-1] != OBSERVATION_SIZE:
        raise _fail(onnx_path, f"expects one input of {OBSERVATION_SIZE} features, got {[i.shape for i in inputs]}")
    if outputs[0].shape[-1] not in (len(steps), None) and not isinstance(outputs[0].shape[-1], str):
        raise _fail(onnx_path, f"outputs {outputs[0].shape[-1]} scores for {len(steps)} actions")
    artifact = PolicyArtifact(folder, tuple(steps), max_replicas, metadata, session)
    probe = artifact.scores(np.zeros((1, OBSERVATION_SIZE), dtype=np.float32))
    if probe.shape != (1, len(steps)):
        raise _fail(onnx_path, f"outputs shape {probe.shape} for {len(steps)} actions")
    return artifact
