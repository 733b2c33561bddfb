"""``algo: rollout``: branches score each residual step, labels pick the clear winner, and the artifact
is what every algorithm writes, the same from ``kis train`` and from a grid worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from controller.observation import OBSERVATION_SIZE
from simulator.training.config import TrainConfig
from simulator.training.envs import make_env
from simulator.training.rollout import branch, constrained_labels, label_samples, labels

TINY = {
    "algo": "rollout", "seed": 3, "net_arch": [16],
    "rollout": {"episodes": 2, "rounds": 2, "every": 10, "lookahead_s": 30, "epochs": 3, "miss_share": 0.01},
    "cluster": {"max_nodes": 1},
    "env": {"randomized": {"rate": [1.0, 4.0], "prompt_mean": [128, 512], "output_mean": [16, 64], "shapes": ["onoff", "flat"]},
            "episode_duration_s": 300, "max_replicas": 4, "gpus": ["H100"], "cold_start_s": [30, 60], "rate_scale": [1.0, 1.0]},
}


def test_labels_take_the_cheapest_step_only_where_it_beats_the_zero_step_by_the_margin():
    zero = 1  # steps -1, 0, +1
    cost = np.array([[0.8, 1.0, 1.2], [0.97, 1.0, 1.2], [0.5, 1.0, 1.5], [1.0, 1.0, 0.9]])
    misses = np.array([[0, 0, 0], [0, 0, 0], [10, 0, 0], [20, 20, 0]])
    # scores at w 0.1: (0.8, 1, 1.2) -> -1; (0.97, 1, 1.2) gains 3% < 5% -> 0; (1.5, 1, 1.5) -> 0; (3, 3, 0.9) -> +1
    assert labels(cost, misses, zero, 0.1, 0.05).tolist() == [0, 1, 1, 2]
    # a cheaper miss makes the scale-down of the third row worth it: (0.6, 1, 1.5)
    assert labels(cost, misses, zero, 0.01, 0.05).tolist() == [0, 1, 0, 2]
    assert labels(cost, misses, zero, 0.1, 0.0).tolist() == [0, 0, 1, 2]


def test_constrained_labels_take_the_cheapest_step_within_the_miss_share():
    zero, share = 1, 0.005  # steps -1, 0, +1; at most 5 misses in 1,000 requests
    cost = np.array([[0.8, 1.0, 1.2]] * 6 + [[0.97, 1.0, 1.2]])
    misses = np.array([[2, 0, 0], [10, 0, 0], [30, 20, 3], [30, 20, 10], [30, 20, 20], [0, 0, 0], [0, 0, 0]])
    served = np.array([[1000] * 3] * 5 + [[0] * 3] + [[1000] * 3])
    got = constrained_labels(cost, misses, served, zero, share, 0.05).tolist()
    assert got == [
        0,  # the scale-down stays within 0.5% and saves 20%
        1,  # it misses 1%: the zero step
        2,  # the zero step misses 2%; only the scale-up stays within
        2,  # none within: the fewest misses
        1,  # none within, and the scale-up misses as many as the zero step: the zero step
        0,  # a silence: nothing to miss, the cheapest
        1,  # within, but saves only 3%
    ]
    data = {"cost": cost, "misses": misses, "served": served}
    assert label_samples(data, zero, margin=0.05, miss_share=share).tolist() == got
    assert label_samples(data, zero, margin=0.05, miss_weight=0.1).tolist() == labels(cost, misses, zero, 0.1, 0.05).tolist()
    # the same misses at ten times the requests are within the share: a count is judged by the traffic it is out of
    assert constrained_labels(cost[1:2], misses[1:2], served[1:2] * 10, zero, share, 0.05).tolist() == [0]


def test_a_branch_of_the_zero_step_is_the_episode_s_own_continuation_and_leaves_it_untouched():
    env = make_env(TrainConfig.model_validate(TINY))
    env.reset(seed=11)
    zero = env.action_map.values.index(0)
    for _ in range(4):
        env.step(zero)
    outcome = branch(env, zero, zero, 6)
    own = np.zeros(3)
    for _ in range(6):
        *_, info = env.step(zero)
        own += (info["cost_usd"], info["slo_misses"], info["completed"])
    assert outcome == tuple(own) and outcome[2] > 0


def test_a_branch_follows_the_given_network_after_its_first_step():
    env = make_env(TrainConfig.model_validate(TINY))
    env.reset(seed=5)
    zero = env.action_map.values.index(0)
    always_up = [(np.zeros((OBSERVATION_SIZE, 5)), np.array([0.0, 0.0, 0.0, 0.0, 1.0]))]  # scores argmax: the +2 step
    followed = branch(env, zero, zero, 5, follow=always_up)
    planner = branch(env, zero, zero, 5)
    own = np.zeros(3)
    for action in (zero, 4, 4, 4, 4):
        *_, info = env.step(action)
        own += (info["cost_usd"], info["slo_misses"], info["completed"])
    assert followed == tuple(own) and followed[0] > planner[0]


@pytest.mark.train
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_kis_train_and_a_grid_worker_write_the_same_loadable_rollout_artifact(tmp_path):
    pytest.importorskip("torch")
    from controller.artifact import load_artifact
    from controller.policies.learned import LearnedPolicy
    from simulator.cli.main import app
    from simulator.training.runs import RunSpec, train_run, write_run

    config = tmp_path / "rollout.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "cli"), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "labels by residual step" in result.output
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    data = np.load(tmp_path / "cli" / "rollouts.npz")
    assert summary["samples"] == len(data["x"]) == sum(summary["labels"].values()) > 0
    assert data["cost"].shape == data["misses"].shape == data["served"].shape == (len(data["x"]), 5)
    assert sorted(set(data["round"].tolist())) == [0, 1]  # the second round's episodes follow the first round's network

    spec = RunSpec("one", TrainConfig.model_validate(TINY).model_dump(mode="json"), str(tmp_path / "grid"))
    write_run(train_run(None, spec))
    a, b = tmp_path / "cli" / "artifact", tmp_path / "grid" / "artifact"
    assert (a / "policy.onnx").read_bytes() == (b / "policy.onnx").read_bytes()
    artifact = load_artifact(a)
    meta = json.loads((a / "metadata.json").read_text())
    assert meta["provenance"]["algorithm"].startswith("rollout") and meta["action"]["kind"] == "residual"
    lo, hi = np.array(meta["feature_range"]["low"]), np.array(meta["feature_range"]["high"])
    np.testing.assert_allclose(lo, data["x"].min(0), rtol=1e-6)
    np.testing.assert_allclose(hi, data["x"].max(0), rtol=1e-6)
    policy = LearnedPolicy.from_artifact(artifact)
    assert policy.planner == make_env(TrainConfig.model_validate(TINY)).policy.planner
    actions = artifact.actions(np.zeros((3, OBSERVATION_SIZE), np.float32))
    assert actions.shape == (3,) and set(actions.tolist()) <= set(range(5))


def test_every_shipped_training_config_loads_and_the_default_policy_is_what_rollout_yaml_trains():
    from controller.artifact import DEFAULT_ARTIFACT
    from simulator.training.config import load_train_config

    configs = sorted(Path("configs/train").glob("*.yaml"))
    assert {p.name for p in configs} >= {"ppo.yaml", "rollout.yaml", "rollout_onoff.yaml"}
    loaded = {p.name: load_train_config(p) for p in configs}
    rollout = loaded["rollout.yaml"]
    assert rollout.algo == "rollout" and rollout.env == loaded["ppo.yaml"].env  # the traffic its header describes
    provenance = json.loads((DEFAULT_ARTIFACT / "metadata.json").read_text())["provenance"]
    trained = {k: provenance[k] for k in ("miss_weight", "miss_share", "margin", "lookahead_s", "every", "episodes", "rounds",
                                          "first_seed", "seed")}
    assert trained == {**rollout.rollout.model_dump(include=set(trained) - {"seed"}), "seed": rollout.seed}


def test_a_rollout_config_without_steps_around_a_proposal_is_refused_in_one_line(tmp_path):
    from simulator.training.config import load_train_config

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"algo": "rollout", "env": {"action_mode": "target"}, "rollout": {"miss_share": 1.5}}))
    with pytest.raises(ValueError) as caught:
        load_train_config(path)
    assert str(caught.value) == f"{path}: invalid training config: rollout.miss_share: Input should be less than 1"
    path.write_text(yaml.safe_dump({"algo": "rollout", "env": {"action_mode": "target"}}))
    with pytest.raises(ValueError, match=r"bad.yaml: invalid training config: algo rollout branches on steps around a "
                                         r"proposal: needs env.action_mode residual or step$"):
        load_train_config(path)
