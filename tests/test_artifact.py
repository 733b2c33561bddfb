"""Policy artifacts: loading, every kind of bad artifact, and the learned policy (onnx helper API, no torch)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from controller.artifact import ArtifactError, load_artifact
from controller.observation import FEATURE_NAMES, OBSERVATION_SIZE, ObservationContext, build_observation, schema_description
from controller.policies.base import PolicyContext
from controller.policies.learned import LearnedPolicy, LearnedState
from controller.slo import SLO

STEPS = [-2, -1, 0, 1, 2]
SHIPPED = Path(__file__).resolve().parents[1] / "controller" / "policies" / "default"


def onnx_model(weights: np.ndarray, bias: np.ndarray, *, argmax: bool = False, input_name: str = "obs") -> bytes:
    """scores = obs @ W + b (or its argmax over actions), built with onnx's helper API."""
    nodes = [helper.make_node("MatMul", [input_name, "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["scores"])]
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", weights.shape[1]])
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["scores"], ["action"], axis=1, keepdims=0))
        output = helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"])
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", weights.shape[0]])], [output],
        [numpy_helper.from_array(weights.astype(np.float32), "W"), numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def metadata(blob: bytes, **changes) -> dict:
    meta = {"format": "kis-policy/1", "schema": schema_description(), "action": {"kind": "step", "steps": STEPS},
            "observation_context": {"max_replicas": 8}, "sha256": hashlib.sha256(blob).hexdigest(),
            "provenance": {"algorithm": "test", "seed": 0}}
    meta.update(changes)
    return meta


def write(folder: Path, blob: bytes, meta: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.onnx").write_bytes(blob)
    (folder / "metadata.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return folder


@pytest.fixture()
def linear(tmp_path):
    """A good artifact: its folder, weights and bias."""
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(OBSERVATION_SIZE, len(STEPS))), rng.normal(size=len(STEPS)) * 0.1
    blob = onnx_model(weights, bias)
    return write(tmp_path / "good", blob, metadata(blob)), weights.astype(np.float32), bias.astype(np.float32)


def random_snapshots(n: int, seed: int = 1) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [{"request_rate": rng.uniform(0, 40), "request_rate_long": rng.uniform(0, 40), "requests_running": rng.uniform(0, 200),
             "requests_waiting": rng.uniform(0, 50), "replicas_ready": float(rng.integers(1, 8)), "ttft_p95": rng.uniform(0, 2),
             "kv_cache_usage": rng.uniform(0, 1), "time_of_day_s": rng.uniform(0, 86400)} for _ in range(n)]


# ------------------------------------------------------------------ good ones
def test_good_artifact_loads_with_its_metadata(linear):
    folder, _, _ = linear
    artifact = load_artifact(folder)
    assert (artifact.action_kind, artifact.action_values, artifact.steps, artifact.max_replicas) == ("step", tuple(STEPS), tuple(STEPS), 8)
    assert artifact.output == "scores" and artifact.provenance == {"algorithm": "test", "seed": 0}
    assert load_artifact(folder / "metadata.json").action_values == tuple(STEPS)  # the metadata path works too


def test_deterministic_actions_are_the_argmax_of_the_linear_model(linear):
    folder, weights, bias = linear
    policy = LearnedPolicy(load_artifact(folder))
    obs = np.stack([build_observation(s, ObservationContext(SLO(), 8)) for s in random_snapshots(64)])
    expected = np.argmax(obs @ weights + bias, axis=1)
    np.testing.assert_array_equal(policy.predict(obs), expected)
    assert len(set(expected.tolist())) > 1  # the check is not trivially one action
    for snapshot, action in zip(random_snapshots(64), expected):
        current = int(snapshot["replicas_ready"])
        proposal, state = policy.decide(snapshot, PolicyContext(0.0, current, 1, 8), policy.initial_state())
        assert proposal.replicas == current + STEPS[action] and isinstance(state, LearnedState)


def test_index_output_models_are_accepted(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias, argmax=True)
    artifact = load_artifact(write(tmp_path / "index", blob, metadata(blob)))
    obs = np.stack([build_observation(s, ObservationContext(SLO(), 8)) for s in random_snapshots(32)])
    assert artifact.output == "index"
    np.testing.assert_array_equal(artifact.actions(obs), np.argmax(obs @ weights + bias, axis=1))
    with pytest.raises(ArtifactError, match="stochastic actions need a model that outputs scores"):
        LearnedPolicy(artifact, deterministic=False)


def test_target_actions_set_the_replicas(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias)
    targets = [1, 2, 4, 8, 16]
    policy = LearnedPolicy(load_artifact(write(tmp_path / "target", blob, metadata(blob, action={"kind": "target", "replicas": targets}))))
    snapshot = random_snapshots(1)[0]
    obs = build_observation(snapshot, ObservationContext(SLO(), 8))
    proposal, _ = policy.decide(snapshot, PolicyContext(0.0, 3, 1, 16), policy.initial_state())
    assert proposal.replicas == targets[int(np.argmax(obs @ weights + bias))]


def test_without_observation_context_the_controller_max_replicas_normalises(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias)
    meta = metadata(blob)
    del meta["observation_context"]
    policy = LearnedPolicy(load_artifact(write(tmp_path / "noctx", blob, meta)))
    obs = policy.observation({"replicas_ready": 4.0}, PolicyContext(0.0, 4, 1, 16))
    assert obs[FEATURE_NAMES.index("replicas_ready_share")] == pytest.approx(4 / 16)


def test_stochastic_actions_follow_the_softmax_and_replay_with_the_seed(tmp_path):
    # Zero weights and biases (0, 0, ln 2, 0, 0): softmax probabilities 1/6, 1/6, 1/3, 1/6, 1/6.
    blob = onnx_model(np.zeros((OBSERVATION_SIZE, 5)), np.array([0, 0, np.log(2), 0, 0]))
    artifact = load_artifact(write(tmp_path / "flat", blob, metadata(blob)))
    counts = np.bincount(artifact.actions(np.zeros((6000, OBSERVATION_SIZE)), np.random.default_rng(3)), minlength=5)
    np.testing.assert_allclose(counts / 6000, [1 / 6, 1 / 6, 1 / 3, 1 / 6, 1 / 6], atol=0.03)
    policy = LearnedPolicy(artifact, deterministic=False, seed=11)

    def replay() -> list[int]:
        state, out = policy.initial_state(), []
        for snapshot in random_snapshots(20):
            proposal, state = policy.decide(snapshot, PolicyContext(0.0, 4, 1, 8), state)
            out.append(proposal.replicas)
        return out

    first = replay()
    assert first == replay() and len(set(first)) > 1


# ------------------------------------------------------------------- bad ones
def test_missing_folder_and_files(tmp_path, linear):
    folder, _, _ = linear
    with pytest.raises(ArtifactError, match="no such directory"):
        load_artifact(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metadata.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"half: missing policy\.onnx"):
        load_artifact(tmp_path / "half")
    (folder / "metadata.json").unlink()
    with pytest.raises(ArtifactError, match=r"good: missing metadata\.json"):
        load_artifact(folder)


def test_corrupt_onnx(tmp_path):
    blob = b"\x08\x07not a protobuf at all"
    with pytest.raises(ArtifactError, match=r"policy\.onnx: corrupt or unsupported ONNX model"):
        load_artifact(write(tmp_path / "corrupt", blob, metadata(blob)))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: onnx_model(np.zeros((OBSERVATION_SIZE - 1, 5)), np.zeros(5)), rf"has shape \['batch', {OBSERVATION_SIZE - 1}\]; this controller's observation is \[N, {OBSERVATION_SIZE}\]"),
    (lambda: onnx_model(np.zeros((OBSERVATION_SIZE, 5)), np.zeros(5), input_name="x"), "exactly one input named 'obs'"),
    (lambda: onnx_model(np.zeros((OBSERVATION_SIZE, 3)), np.zeros(3)), r"shape \[2, 3\] for a batch of 2; metadata declares 5 actions"),
])
def test_mis_shaped_models(tmp_path, build, message):
    blob = build()
    with pytest.raises(ArtifactError, match=message):
        load_artifact(write(tmp_path / "bad", blob, metadata(blob)))


def _schema(**changes) -> dict:
    schema = copy.deepcopy(schema_description())
    schema.update(changes)
    return schema


def _renamed() -> dict:
    schema = _schema()
    schema["features"][3]["name"] = "tokens_per_second"
    return schema


def _rescaled() -> dict:
    schema = _schema()
    schema["features"][0]["scale"] = 20.0
    return schema


@pytest.mark.parametrize(("changes", "message"), [
    ({"schema": _schema(version="kis-obs/0")},
     "artifact was trained with observation schema kis-obs/0; this controller speaks kis-obs/1: retrain or upgrade"),
    ({"schema": _renamed()}, r"feature list differs from schema kis-obs/1 \(unknown \['tokens_per_second'\], absent \['generation_token_rate_per_replica'\]\)"),
    ({"schema": _schema(features=list(reversed(schema_description()["features"])))}, "same names in another order"),
    ({"schema": _rescaled()}, "feature 'request_rate' was normalised with offset=0.0, scale=20.0"),
    ({"schema": _schema(clip=5.0)}, "clipped to 5.0"),
    ({"schema": "kis-obs/1"}, "'schema' must be the observation schema object"),
    ({"format": "kis-policy/0"}, "format is 'kis-policy/0', expected 'kis-policy/1'"),
    ({"action": {"kind": "continuous"}}, "action.kind must be 'step' or 'target'"),
    ({"action": {"kind": "step", "steps": [-1, 0.5, 1]}}, "action.steps must be a non-empty list of integers"),
    ({"action": {"kind": "step", "steps": [0, 0, 1, 2, 3]}}, "action.steps has duplicates"),
    ({"action": {"kind": "target", "replicas": [-1, 1, 2, 3, 4]}}, "action.replicas must be >= 0"),
    ({"observation_context": {"max_replicas": 0}}, "observation_context.max_replicas must be a positive integer"),
    ({"provenance": ["ppo"]}, "'provenance' must be an object"),
    ({"sha256": "abc"}, "sha256 must be 64 hex digits"),
    ({"sha256": "0" * 64}, r"policy\.onnx: checksum mismatch"),
])
def test_bad_metadata_is_refused_with_the_file_and_the_problem(tmp_path, linear, changes, message):
    folder, _, _ = linear
    blob = (folder / "policy.onnx").read_bytes()
    write(folder, blob, metadata(blob, **changes))
    with pytest.raises(ArtifactError, match=message) as info:
        load_artifact(folder)
    assert str(folder) in str(info.value) and isinstance(info.value, ValueError)


def test_unreadable_metadata(tmp_path, linear):
    folder, _, _ = linear
    blob = (folder / "policy.onnx").read_bytes()
    with pytest.raises(ArtifactError, match=r"metadata\.json: metadata is not valid JSON"):
        load_artifact(write(folder, blob, "{"))
    with pytest.raises(ArtifactError, match="metadata must be a JSON object"):
        load_artifact(write(folder, blob, "[1, 2]"))


def test_replaced_onnx_is_caught_by_the_checksum(tmp_path, linear):
    folder, weights, bias = linear
    (folder / "policy.onnx").write_bytes(onnx_model(weights * 2, bias))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(folder)


# --------------------------------------------------------------- the shipped one
@pytest.mark.skipif(not (SHIPPED / "policy.onnx").is_file(), reason="no shipped default policy in this checkout")
def test_shipped_default_policy_loads_and_decides():
    artifact = load_artifact(SHIPPED)
    policy = LearnedPolicy(artifact)
    for snapshot in random_snapshots(5):
        proposal, _ = policy.decide(snapshot, PolicyContext(0.0, 3, 1, 8), policy.initial_state())
        assert proposal.replicas - 3 in artifact.action_values
