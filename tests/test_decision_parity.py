"""One decision path: the training env, the evaluation runner and the controller loop decide alike.

A learned (residual, around the planner) policy runs on one simulated workload
three ways: through the evaluation runner (``simulate`` + ``make_decider``),
as the agent of ``kis/Autoscale-v0`` (the env's observation fed to the same
network, its action through the env's ``decide``), and through the
controller's reconcile loop against the API emulator with the runner's
snapshots as its Prometheus reads. Every decision must be the same.
"""

from __future__ import annotations

import numpy as np

from simulator.envs.autoscale import AutoscaleEnv
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider
from simulator.planning.capacity import cluster_capacity
from simulator.runner import simulate
from simulator.workloads.workload import Workload
from tests.controller_helpers import NS, FakeReader, autoscaler, deployment, reconciler
from tests.kube_emulator import KubeEmulator
from tests.test_artifact import STEPS, metadata, onnx_model, write
from tests.test_env_autoscale import CONFIG, toy_pools
from tests.toy import poisson_workload

SEED = 4


def _artifact(tmp_path):
    rng = np.random.default_rng(11)
    blob = onnx_model(rng.normal(size=(18, len(STEPS))) * 0.8, np.array([0, 0, 1.0, 0, 0]))
    return write(tmp_path / "residual", blob, metadata(blob, action={"kind": "residual", "steps": STEPS}))


def test_env_runner_and_controller_loop_take_the_same_decisions(tmp_path):
    pools = toy_pools(scale=3.0)
    folder = _artifact(tmp_path)
    calm, burst = poisson_workload(rate=3, duration=900, seed=2), poisson_workload(rate=40, duration=240, seed=3)
    arrivals = np.concatenate([calm.arrival_s, burst.arrival_s + 300])
    order = np.argsort(arrivals, kind="stable")
    workload = Workload(arrivals[order], np.concatenate([calm.prompt_tokens, burst.prompt_tokens])[order],
                        np.concatenate([calm.output_tokens, burst.output_tokens])[order], 900.0, "burst")
    setup = EvaluationSetup(cluster=CONFIG, min_replicas=1, max_replicas=8, initial_replicas=2)

    # 1. the evaluation runner
    entry = PolicyEntry("learned", {"type": "learned", "artifact": str(folder)})
    run = simulate(workload, CONFIG, replicas=2, decide=make_decider(entry, setup, pools), seed=SEED, pools=pools)
    runner = [(d.proposal, d.final) for d in run.decisions]
    finals = [final for _, final in runner]
    assert sum(a != b for a, b in zip(finals, finals[1:])) >= 2, "the policy should move the fleet for this test to mean anything"

    # 2. the training env, with the same network as the agent
    from controller.artifact import load_artifact

    artifact = load_artifact(folder)
    env = AutoscaleEnv(CONFIG, None, pools=pools, min_replicas=1, max_replicas=8, initial_replicas=2, steps=STEPS,
                       planner=artifact.planner)
    obs, _ = env.reset(seed=SEED, options={"workload": workload})
    trained = []
    while True:
        obs, _, _, truncated, _ = env.step(int(artifact.actions(obs)[0]))
        trained.append((env.last_decision.proposal, env.last_decision.final))
        if truncated:
            break
    assert trained == runner[: len(trained)] and len(trained) == len(runner) - 1  # the runner also decides at the very end

    # 3. the controller loop, reading the runner's snapshots as Prometheus would give them
    capacity = cluster_capacity(CONFIG, setup.slo, pools=pools).to_dict()
    kube = KubeEmulator(auto_ready=False).start()
    try:
        kube.put("deployments", deployment("llm", 2))
        kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "learned", "artifact": {"path": str(folder)}},
                                                    capacity=capacity, coldStartSeconds=CONFIG.lifecycle.cold_start_s))
        reader = FakeReader()
        rec = reconciler(kube, reader)
        online = []
        for snapshot, decision in zip(run.snapshots, run.decisions):
            kube.set_ready(NS, "llm", int(snapshot["replicas_ready"]))
            reader.snapshot = dict(snapshot)
            record = rec.tick(decision.time_s).decisions[f"{NS}/llm"]
            online.append((record.proposal, record.final))
    finally:
        kube.stop()
    assert online == runner
