"""Export a trained stable-baselines3 policy as a torch-free artifact (ONNX + metadata)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from controller.artifact import ARTIFACT_FORMAT, ActionMap, FeatureRange
from controller.capacity import CapacityProfile
from controller.observation import OBSERVATION_SIZE, schema_description
from controller.policies.planner import PlannerPolicy


def _scores_module(model: Any):
    """A torch module mapping observations to per-action scores (logits or Q-values)."""
    import torch

    policy = model.policy

    class Scores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            if hasattr(self.policy, "q_net"):  # DQN
                return self.policy.q_net(obs)
            features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
            latent = self.policy.mlp_extractor.forward_actor(features)
            return self.policy.action_net(latent)

    return Scores().eval()


def export_onnx(module: Any, path: Path) -> None:
    """``module`` (observations -> per-action scores) as ONNX at ``path``: input ``obs`` float32 [N, features],
    output ``scores``. The exporter's notes that do not concern an MLP (torchvision absent, deprecations) are silenced."""
    import logging
    import warnings

    import torch

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                module, (torch.zeros(1, OBSERVATION_SIZE, dtype=torch.float32),), str(path), input_names=["obs"],
                output_names=["scores"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},), dynamo=True,
                verbose=False, external_data=False,
            )
    finally:
        exporter_log.setLevel(level)


def planner_parameters(planner: PlannerPolicy) -> dict[str, Any]:
    """The planner's constructor arguments, as an artifact records them."""
    return {f.name: getattr(planner, f.name) for f in dataclasses.fields(planner) if f.init and f.name != "name"}


def export_artifact(model: Any, out_dir: Path, **fields: Any) -> Path:
    """A stable-baselines3 model's policy as an artifact (:func:`write_artifact`)."""
    return write_artifact(_scores_module(model), out_dir, **fields)


def write_artifact(module: Any, out_dir: Path, *, action_map: ActionMap, planner: PlannerPolicy, provenance: dict[str, Any],
                   feature_range: FeatureRange | None = None, capacity: CapacityProfile | None = None) -> Path:
    """Write ``policy.onnx`` (the torch ``module``: input ``obs`` float32 [N, features], output ``scores`` [N, actions];
    the action is the argmax) and ``metadata.json`` (:mod:`controller.artifact`) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "policy.onnx"
    export_onnx(module, onnx_path)
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    metadata: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "schema": schema_description(),
        "action": action_map.to_dict(),
        "planner": planner_parameters(planner),
        "sha256": digest,
        "provenance": {"exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **provenance},
    }
    if feature_range is not None:
        metadata["feature_range"] = feature_range.to_dict()
    if capacity is not None:
        metadata["capacity"] = capacity.to_dict()
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return out_dir


def predict_scores(model: Any, obs: np.ndarray) -> np.ndarray:
    """Per-action scores of the torch model (for round-trip checks)."""
    import torch

    with torch.no_grad():
        return _scores_module(model)(torch.as_tensor(obs, dtype=torch.float32)).numpy()
