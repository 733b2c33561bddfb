"""Policy artifacts: loading, validation errors, and the learned policy (no torch)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from controller.artifact import ArtifactError, load_artifact
from controller.observation import OBSERVATION_SIZE, ObservationContext, build_observation, schema_description
from controller.policies.base import PolicyContext
from controller.policies.learned import LearnedPolicy
from controller.slo import SLO

STEPS = [-2, -1, 0, 1, 2]


def linear_onnx(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """scores = obs @ W + b, built with onnx's helper API."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"), numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def write_artifact(folder, weights=None, *, metadata_changes=None, blob=None, checksum=True):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(OBSERVATION_SIZE, len(STEPS))) if weights is None else weights
    blob = linear_onnx(weights, np.zeros(weights.shape[1])) if blob is None else blob
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.onnx").write_bytes(blob)
    meta = {"format": "kis-policy/1", "schema": schema_description(), "action": {"kind": "step", "steps": STEPS},
            "observation_context": {"max_replicas": 8}, "provenance": {"algorithm": "test"}}
    if checksum:
        meta["sha256"] = hashlib.sha256(blob).hexdigest()
    for key, value in (metadata_changes or {}).items():
        meta[key] = value
    (folder / "metadata.json").write_text(json.dumps(meta))
    return weights


def test_learned_policy_takes_the_argmax_step(tmp_path):
    weights = write_artifact(tmp_path / "a")
    policy = LearnedPolicy(load_artifact(tmp_path / "a"))
    rng = np.random.default_rng(1)
    for _ in range(50):
        snapshot = {"request_rate": rng.uniform(0, 40), "requests_running": rng.uniform(0, 200), "requests_waiting": rng.uniform(0, 50),
                    "replicas_ready": float(rng.integers(1, 8)), "ttft_p95": rng.uniform(0, 2)}
        obs = build_observation(snapshot, ObservationContext(SLO(), 8))
        expected = STEPS[int(np.argmax(obs @ weights))]
        proposal, _ = policy.decide(snapshot, PolicyContext(0.0, 4, 1, 8), None)
        assert proposal.replicas == 4 + expected


def test_batch_actions_match_numpy(tmp_path):
    weights = write_artifact(tmp_path / "a")
    artifact = load_artifact(tmp_path / "a" / "metadata.json")
    obs = np.random.default_rng(2).uniform(-3, 3, (1000, OBSERVATION_SIZE)).astype(np.float32)
    np.testing.assert_array_equal(artifact.actions(obs), np.argmax(obs @ weights.astype(np.float32), axis=1))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema": {"version": "kis-obs/0", "features": []}}, "trained with observation schema 'kis-obs/0'; this controller speaks 'kis-obs/1'"),
        ({"schema": {**schema_description(), "features": schema_description()["features"][:-1]}}, "feature list differs"),
        ({"format": "pickle"}, "format is 'pickle'"),
        ({"action": {"kind": "target"}}, "action must be"),
        ({"observation_context": {}}, "max_replicas must be a positive integer"),
        ({"sha256": "0" * 64}, "checksum mismatch"),
    ],
)
def test_bad_metadata_is_refused(tmp_path, changes, message):
    write_artifact(tmp_path / "a", metadata_changes=changes)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path / "a")


def test_missing_corrupt_and_mis_shaped_models(tmp_path):
    with pytest.raises(ArtifactError, match="missing metadata.json"):
        load_artifact(tmp_path / "nothing")
    write_artifact(tmp_path / "corrupt", blob=b"not an onnx model", checksum=False)
    with pytest.raises(ArtifactError, match="cannot load ONNX model"):
        load_artifact(tmp_path / "corrupt")
    write_artifact(tmp_path / "narrow", weights=np.ones((OBSERVATION_SIZE - 1, 5)))
    with pytest.raises(ArtifactError, match=f"one input of {OBSERVATION_SIZE} features"):
        load_artifact(tmp_path / "narrow")
    write_artifact(tmp_path / "three", weights=np.ones((OBSERVATION_SIZE, 3)))
    with pytest.raises(ArtifactError, match="for 5 actions"):
        load_artifact(tmp_path / "three")
    (tmp_path / "badjson").mkdir()
    (tmp_path / "badjson" / "metadata.json").write_text("{")
    (tmp_path / "badjson" / "policy.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(tmp_path / "badjson")
    assert onnx.__version__  # the onnx package builds test models only; the loader needs onnxruntime alone
