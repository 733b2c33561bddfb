"""Policy artifacts: loading, every kind of bad artifact, and the learned policy (onnx helper API, no torch)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from controller.artifact import ArtifactError, load_artifact
from controller.capacity import CapacityProfile
from controller.observation import FEATURE_NAMES, OBSERVATION_SIZE, schema_description
from controller.policies.base import PolicyContext
from controller.policies.learned import LearnedPolicy, LearnedState
from controller.policies.planner import PlannerPolicy
from controller.slo import SLO

STEPS = [-2, -1, 0, 1, 2]
SHIPPED = Path(__file__).resolve().parents[1] / "controller" / "policies" / "default"
#: One replica serves 4 req/s of 1,000-token prompts and 200-token outputs at the SLO (2 req/s of 4,000-token prompts).
CAPACITY = CapacityProfile((1000.0, 4000.0), (200.0, 800.0), ((4.0, 3.0), (2.0, 1.5)), "test")


def ctx(current: int, max_replicas: int = 8, now: float = 0.0) -> PolicyContext:
    return PolicyContext(now, current, 1, max_replicas, SLO(), 15.0, CAPACITY, 90.0)


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
    meta = {"format": "kis-policy/2", "schema": schema_description(), "action": {"kind": "step", "steps": STEPS},
            "planner": {"target_utilization": 0.8}, "capacity": CAPACITY.to_dict(), "sha256": hashlib.sha256(blob).hexdigest(),
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
    out = []
    for _ in range(n):
        rate = rng.uniform(0, 40)
        out.append({"request_rate": rate, "request_rate_long": rng.uniform(0, 40), "requests_running": rng.uniform(0, 200),
                    "requests_waiting": rng.uniform(0, 50), "replicas_ready": float(rng.integers(1, 8)), "ttft_p95": rng.uniform(0, 0.45),
                    "kv_cache_usage": rng.uniform(0, 1), "prompt_token_rate": rate * rng.uniform(200, 3000),
                    "generation_token_rate": rate * rng.uniform(20, 400)})
    return out


def observations(policy: LearnedPolicy, snapshots, current: int = 3) -> np.ndarray:
    return np.stack([policy.observe(s, ctx(current), policy.initial_state())[0] for s in snapshots])


# ------------------------------------------------------------------ good ones
def test_good_artifact_loads_with_its_metadata(linear):
    folder, _, _ = linear
    artifact = load_artifact(folder)
    assert (artifact.action_map.kind, artifact.action_map.values) == ("step", tuple(STEPS))
    # a planner recorded before the peak hold existed is the planner it was trained with: no hold
    assert artifact.planner == {"target_utilization": 0.8, "peak_hold_s": None}
    assert artifact.feature_range is None and artifact.capacity == CAPACITY
    assert artifact.output == "scores" and artifact.provenance == {"algorithm": "test", "seed": 0}
    assert load_artifact(folder / "metadata.json").action_map == artifact.action_map  # the metadata path works too
    assert LearnedPolicy.from_artifact(artifact).planner.peak_hold_s is None


def test_a_planner_that_records_the_peak_hold_keeps_it_and_an_empty_one_takes_the_defaults(tmp_path, linear):
    blob = (linear[0] / "policy.onnx").read_bytes()
    held = load_artifact(write(tmp_path / "held", blob, metadata(blob, planner={"target_utilization": 0.8, "peak_hold_s": 900.0})))
    assert LearnedPolicy.from_artifact(held).planner.peak_hold_s == 900.0
    plain = load_artifact(write(tmp_path / "plain", blob, metadata(blob, planner={})))
    assert LearnedPolicy.from_artifact(plain).planner == PlannerPolicy()


def test_deterministic_actions_are_the_argmax_of_the_linear_model(linear):
    folder, weights, bias = linear
    policy = LearnedPolicy.from_artifact(load_artifact(folder))
    snapshots = random_snapshots(64)
    expected = np.argmax(observations(policy, snapshots) @ weights + bias, axis=1)
    assert len(set(expected.tolist())) > 1  # the check is not trivially one action
    for snapshot, action in zip(snapshots, expected):
        proposal, state = policy.decide(snapshot, ctx(3), policy.initial_state())
        assert proposal.replicas == 3 + STEPS[action] and isinstance(state, LearnedState) and proposal.fallback is None


def test_residual_actions_move_around_the_planners_proposal(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias)
    policy = LearnedPolicy.from_artifact(load_artifact(write(tmp_path / "res", blob, metadata(blob, action={"kind": "residual", "steps": STEPS}))))
    for snapshot in random_snapshots(32):
        planned, _ = policy.planner.decide(snapshot, ctx(3), policy.initial_state().planner)
        action = int(np.argmax(policy.observe(snapshot, ctx(3), policy.initial_state())[0] @ weights + bias))
        proposal, _ = policy.decide(snapshot, ctx(3), policy.initial_state())
        assert proposal.replicas == planned.replicas + STEPS[action]


def test_index_output_models_are_accepted(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias, argmax=True)
    artifact = load_artifact(write(tmp_path / "index", blob, metadata(blob)))
    obs = observations(LearnedPolicy.from_artifact(artifact), random_snapshots(32))
    assert artifact.output == "index"
    np.testing.assert_array_equal(artifact.actions(obs), np.argmax(obs @ weights + bias, axis=1))
    with pytest.raises(ArtifactError, match="stochastic actions need a model that outputs scores"):
        LearnedPolicy.from_artifact(artifact, deterministic=False)


def test_target_actions_set_the_replicas(tmp_path, linear):
    _, weights, bias = linear
    blob = onnx_model(weights, bias)
    targets = [1, 2, 4, 8, 16]
    policy = LearnedPolicy.from_artifact(load_artifact(write(tmp_path / "target", blob, metadata(blob, action={"kind": "target", "replicas": targets}))))
    snapshot = random_snapshots(1)[0]
    obs = policy.observe(snapshot, ctx(3, 16), policy.initial_state())[0]
    proposal, _ = policy.decide(snapshot, ctx(3, 16), policy.initial_state())
    assert proposal.replicas == targets[int(np.argmax(obs @ weights + bias))]


def test_features_out_of_the_training_range_hand_the_decision_to_the_planner(tmp_path, linear):
    """Bounds from calm training traffic; a snapshot at ten times that load is out of range: the planner decides."""
    _, weights, bias = linear
    blob = onnx_model(weights, bias)
    calm = [dict(s, request_rate=s["request_rate"] / 20, requests_waiting=0.0, ttft_p95=0.2) for s in random_snapshots(200, seed=4)]
    probe = LearnedPolicy.from_artifact(load_artifact(write(tmp_path / "probe", blob, metadata(blob))))
    seen = observations(probe, calm)
    bounds = {"features": list(FEATURE_NAMES), "low": seen.min(axis=0).tolist(), "high": seen.max(axis=0).tolist(), "margin": 0.1}
    policy = LearnedPolicy.from_artifact(load_artifact(write(tmp_path / "ranged", blob, metadata(blob, feature_range=bounds))))
    inside, _ = policy.decide(calm[0], ctx(3), policy.initial_state())
    assert inside.fallback is None and inside.reasons[0].startswith("action ")
    busy = dict(calm[0], request_rate=80.0, requests_waiting=400.0, ttft_p95=9.0)
    outside, _ = policy.decide(busy, ctx(3), policy.initial_state())
    planned, _ = policy.planner.decide(busy, ctx(3), policy.initial_state().planner)
    assert outside.fallback == "out_of_range" and outside.replicas == planned.replicas > 3
    assert outside.reasons[0].startswith("OutOfRange: load_per_ready")


def test_without_a_capacity_profile_the_learned_policy_has_no_answer(linear):
    policy = LearnedPolicy.from_artifact(load_artifact(linear[0]))
    proposal, _ = policy.decide(random_snapshots(1)[0], PolicyContext(0.0, 3, 1, 8), policy.initial_state())
    assert proposal.replicas is None and "capacity" in proposal.reasons[0]


def test_stochastic_actions_follow_the_softmax_and_replay_with_the_seed(tmp_path):
    # Zero weights and biases (0, 0, ln 2, 0, 0): softmax probabilities 1/6, 1/6, 1/3, 1/6, 1/6.
    blob = onnx_model(np.zeros((OBSERVATION_SIZE, 5)), np.array([0, 0, np.log(2), 0, 0]))
    artifact = load_artifact(write(tmp_path / "flat", blob, metadata(blob)))
    counts = np.bincount(artifact.actions(np.zeros((6000, OBSERVATION_SIZE)), np.random.default_rng(3)), minlength=5)
    np.testing.assert_allclose(counts / 6000, [1 / 6, 1 / 6, 1 / 3, 1 / 6, 1 / 6], atol=0.03)
    policy = LearnedPolicy.from_artifact(artifact, deterministic=False, seed=11)

    def replay() -> list[int]:
        state, out = policy.initial_state(), []
        for snapshot in random_snapshots(20):
            proposal, state = policy.decide(snapshot, ctx(4), state)
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
    schema["features"][3]["name"] = "tokens_per_second"  # was forecast_trend
    return schema


def _rescaled() -> dict:
    schema = _schema()
    schema["features"][0]["scale"] = 20.0
    return schema


@pytest.mark.parametrize(("changes", "message"), [
    ({"schema": _schema(version="kis-obs/0")},
     "artifact was trained with observation schema kis-obs/0; this controller speaks kis-obs/2: retrain or upgrade"),
    ({"schema": _renamed()}, r"feature list differs from schema kis-obs/2 \(unknown \['tokens_per_second'\], absent \['forecast_trend'\]\)"),
    ({"schema": _schema(features=list(reversed(schema_description()["features"])))}, "same names in another order"),
    ({"schema": _rescaled()}, "feature 'load_per_ready' was normalised with offset=0.0, scale=20.0"),
    ({"schema": _schema(clip=5.0)}, "clipped to 5.0"),
    ({"schema": "kis-obs/2"}, "'schema' must be the observation schema object"),
    ({"format": "kis-policy/1", "schema": _schema(version="kis-obs/1")},
     r"format is 'kis-policy/1' \(observation schema kis-obs/1\); this controller loads 'kis-policy/2' \(kis-obs/2\): retrain it"),
    ({"action": {"kind": "continuous"}}, "action.kind must be one of residual, step, target"),
    ({"action": {"kind": "step", "steps": [-1, 0.5, 1]}}, "action.steps must be a non-empty list of integers"),
    ({"action": {"kind": "step", "steps": [0, 0, 1, 2, 3]}}, "action.steps has duplicates"),
    ({"action": {"kind": "target", "replicas": [-1, 1, 2, 3, 4]}}, "action.replicas must be >= 0"),
    ({"planner": {"target_utilization": 5.0}}, r"planner: target_utilization must be in \(0, 4\]"),
    ({"planner": {"headroom": 0.8}}, "planner: .*unexpected keyword argument 'headroom'"),
    ({"feature_range": {"features": ["x"], "low": [0], "high": [1]}}, "feature_range must list this schema's features"),
    ({"capacity": {"promptTokens": [1000], "outputTokens": [200], "maxRps": [[-1]]}}, "capacity.maxRps: every entry must be a positive"),
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
def test_shipped_default_policy_scales_up_under_a_queue_and_not_when_idle():
    policy = LearnedPolicy.from_artifact(load_artifact(SHIPPED))
    loaded = {"request_rate": 30.0, "request_rate_long": 20.0, "requests_running": 120.0, "requests_waiting": 60.0, "replicas_ready": 3.0,
              "replicas_desired": 3.0, "replicas_starting": 0.0, "ttft_p95": 2.0, "tpot_p95": 0.06, "kv_cache_usage": 0.9,
              "prompt_token_rate": 30 * 1000.0, "generation_token_rate": 30 * 200.0, "gpu_utilization": 100.0, "queue_time_p95": 1.5}
    up, _ = policy.decide(loaded, ctx(3), policy.initial_state())
    assert up.replicas is not None and up.replicas > 3
    idle = dict(loaded, request_rate=0.1, request_rate_long=0.1, requests_running=1.0, requests_waiting=0.0, ttft_p95=0.1, tpot_p95=0.01,
                kv_cache_usage=0.01, prompt_token_rate=100.0, generation_token_rate=20.0, gpu_utilization=3.0, queue_time_p95=0.0)
    down, _ = policy.decide(idle, ctx(3), policy.initial_state())
    assert down.replicas is not None and down.replicas <= 3


# ---------------------------------------------------------------- safety property
@pytest.fixture(scope="module")
def eager_to_shrink(tmp_path_factory):
    """A residual policy whose network always picks the largest scale-down (-2 around the planner)."""
    bias = np.array([10.0, 0, 0, 0, 0])
    blob = onnx_model(np.zeros((OBSERVATION_SIZE, 5)), bias)
    folder = write(tmp_path_factory.mktemp("shrink"), blob, metadata(blob, action={"kind": "residual", "steps": STEPS}))
    return LearnedPolicy.from_artifact(load_artifact(folder))


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0, 200), waiting=st.floats(0.5, 500), ttft=st.floats(0.51, 60), running=st.floats(0, 500),
       ready=st.integers(0, 16), current=st.integers(1, 16))
def test_the_learned_policy_never_scales_down_while_requests_wait_and_ttft_is_over_the_slo(eager_to_shrink, rate, waiting, ttft,
                                                                                             running, ready, current):
    snapshot = {"request_rate": rate, "requests_waiting": waiting, "ttft_p95": ttft, "requests_running": running,
                "replicas_ready": float(ready), "prompt_token_rate": rate * 1000, "generation_token_rate": rate * 200}
    proposal, _ = eager_to_shrink.decide(snapshot, ctx(current, 16), eager_to_shrink.initial_state())
    assert proposal.replicas is None or proposal.replicas >= current


def test_the_eager_shrinker_does_shrink_when_nothing_waits(eager_to_shrink):
    calm = {"request_rate": 1.0, "requests_waiting": 0.0, "ttft_p95": 0.1, "requests_running": 1.0, "replicas_ready": 8.0,
            "prompt_token_rate": 1000.0, "generation_token_rate": 200.0}
    proposal, _ = eager_to_shrink.decide(calm, ctx(8), eager_to_shrink.initial_state())
    assert proposal.replicas < 8


def test_learned_policy_records_and_counts_its_decisions(linear):
    """Each decision says which action it took; the state counts decisions (stochastic draws are seeded by
    (seed, count)); relative artifact paths resolve against ``base_dir``."""
    from controller.policies.registry import build_policy

    folder, _, _ = linear
    policy = build_policy({"type": "learned", "artifact": str(folder), "deterministic": False, "seed": 5}, base_dir=Path("/nowhere"))
    assert isinstance(policy, LearnedPolicy) and (policy.deterministic, policy.seed) == (False, 5)
    relative = build_policy({"type": "learned", "artifact": folder.name}, base_dir=folder.parent)
    assert isinstance(relative, LearnedPolicy) and relative.deterministic and relative.seed == 0
    snapshot = random_snapshots(1)[0]
    proposal, state = relative.decide(snapshot, ctx(3), relative.initial_state())
    action = int(relative.actor.actions(relative.observe(snapshot, ctx(3), relative.initial_state())[0][None, :])[0])
    assert state.decisions == 1 and proposal.replicas == 3 + STEPS[action]
    assert proposal.reasons[0].startswith(f"action {action}: step {STEPS[action]:+d}")
    _, state = relative.decide(snapshot, ctx(3), state)
    assert state.decisions == 2
    draws = [policy.decide(snapshot, ctx(4), LearnedState(decisions=n))[0].replicas for n in range(20)]
    assert draws == [policy.decide(snapshot, ctx(4), LearnedState(decisions=n))[0].replicas for n in range(20)] and len(set(draws)) > 1


def test_a_failing_network_hands_the_decision_to_the_planner(linear):
    policy = LearnedPolicy.from_artifact(load_artifact(linear[0]))

    class Broken:
        def actions(self, *_args, **_kwargs):
            raise ArtifactError("model returned action index outside 0..4")

    broken = LearnedPolicy(Broken(), policy.action_map, policy.planner)
    snapshot = random_snapshots(1)[0]
    proposal, state = broken.decide(snapshot, ctx(3), broken.initial_state())
    planned, _ = broken.planner.decide(snapshot, ctx(3), broken.initial_state().planner)
    assert proposal.fallback == "actor_error" and proposal.replicas == planned.replicas and state.decisions == 1
    assert proposal.reasons[0].startswith("ActorFailed: model returned action index outside 0..4")
