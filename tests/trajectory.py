"""Recorded cluster trajectories: the reference that engine and cluster speed-ups must reproduce.

Each scenario drives a :class:`~simulator.cluster.cluster.Cluster` through a
fixed schedule of ``scale()`` calls, with ``run_until`` and ``snapshot`` every
15 s, then ``finish()``. Everything that decides the outcome is pinned here:
the latency model (:class:`PinnedLatency`, written out below, not the
simulator's calibrated one), KV capacity, prices, lifecycle and the workload
(a window of the Azure conversation trace, or one drawn from an explicit
generator). What is recorded: every snapshot value and cluster counter per
tick, and every finished request's timeline in the order the cluster
produced it.

The spec-based (roofline) model the simulator serves with has its own
scenarios, with its calibration written out (:data:`PINNED_CALIBRATION`), and
one ``kis/Autoscale-v0`` episode (:data:`ENV_EPISODE`) records what the agent
sees: every observation, reward and step info. That episode also goes
through the planner and the guardrails, so a change to the controller's
decisions changes it too.

Record the reference (only when the simulation's behaviour is meant to change):

    .venv/bin/python -m tests.trajectory --record
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.cluster.cluster import Cluster, PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool, PodLifecycle
from simulator.engine.replica import EngineConfig
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from simulator.workloads.workload import Workload

DATA = Path(__file__).resolve().parent / "data"
CONV_TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
INTERVAL_S = 15.0
#: Per-tick cluster counters recorded next to the snapshot.
COUNTERS = ("desired", "ready", "starting", "gpus_in_use", "cost_usd", "gpu_seconds", "rejected", "unserved", "scale_events", "finished",
            "pending", "draining")
#: Columns of a finished request (:class:`simulator.engine.replica.FinishedRequest`).
REQUEST_COLUMNS = ("rid", "arrival_s", "admitted_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens")


class PinnedLatency:
    """A roofline-shaped iteration-time model with fixed coefficients (about an 8B model on an H100).

    Non-decreasing in every argument and affine in ``decode_context``, as the
    engine requires; ``scale`` slows a pool down (heterogeneous GPUs).
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def iteration_ms(self, prefill_tokens, prefill_context, decode_batch, decode_context, prefill_seqs=1):
        tokens = prefill_tokens + decode_batch
        sampled = decode_batch + (prefill_seqs if prefill_tokens else 0)
        linear = max(0.0216 * tokens, 6.1)
        head = max(0.00214 * sampled, 0.61)
        total = 1.0 + linear + head + 4.6e-7 * prefill_context + 1.3e-5 * decode_context
        return self.scale * total

    def prefill_ms(self, batch, prompt_len):
        return self.iteration_ms(batch * prompt_len, batch * prompt_len * (prompt_len + 1) / 2.0, 0, 0.0, prefill_seqs=batch)

    def decode_ms(self, batch, context_len):
        return self.iteration_ms(0, 0.0, batch, float(batch * context_len))


#: The roofline model's calibration as shipped when the references were recorded (a refit must not move them).
PINNED_CALIBRATION = CalibrationParams(compute_eff=0.7381894782273076, memory_eff=0.8189388790265097, attention_compute_eff=0.3609262058348622,
                                       attention_memory_eff=0.11189999074084345, kernel_us=2.160165906903113, host_kernel_us=33.34136067530895)


def roofline(timing: str = "kernel", engine: str = "paged") -> SpecLatencyModel:
    """The spec-based model of an H100 serving llama-8b, with :data:`PINNED_CALIBRATION`."""
    from simulator.profiles import get_gpu, load_shape

    return SpecLatencyModel(get_gpu("H100"), load_shape("llama-8b"), PINNED_CALIBRATION, engine=engine, timing=timing)


def latency_model(kind: str, slow: float):
    """``pinned`` (:class:`PinnedLatency`, ``slow`` times slower) or ``roofline-TIMING-ENGINE`` (one speed only)."""
    if kind == "pinned":
        return PinnedLatency(slow)
    _, timing, engine = kind.split("-")
    assert slow == 1.0, "the roofline scenarios run at one speed"
    return roofline(timing, engine)


@dataclass(frozen=True)
class Scenario:
    """A workload, a cluster and a schedule of ``(time_s, replicas)`` scale calls."""

    name: str
    duration_s: float
    initial_replicas: int
    schedule: tuple[tuple[float, int], ...]
    router: str
    pools: tuple[tuple[NodePool, float, EngineConfig], ...]  # (pool, slowdown, engine limits)
    lifecycle: PodLifecycle
    seed: int
    rates: tuple[float, ...] = ()  # req/s per quarter of the window (synthetic workloads)
    latency: str = "pinned"  # see latency_model()


def _engine(kv: int, seqs: int = 256, budget: int = 2048, waiting: int | None = None) -> EngineConfig:
    return EngineConfig(kv_capacity_tokens=kv, max_num_seqs=seqs, max_batched_tokens=budget, max_waiting=waiting)


SCENARIOS: dict[str, Scenario] = {
    # The first 15 minutes of the Azure conversation trace at its native rate; scale-out past the
    # first node (provisioning), scale-in of Ready pods (draining) and of Starting ones.
    "conv": Scenario(
        "conv", 900.0, 2,
        ((60.0, 6), (300.0, 3), (420.0, 7), (435.0, 4), (600.0, 1), (705.0, 3)),
        "least_connections",
        ((NodePool("h100", "H100", gpus_per_node=4, initial_nodes=1, max_nodes=2, provisioning_delay_s=120.0), 1.0, _engine(420_000)),),
        PodLifecycle(image_pull_s=30.0, image_pull_cached_s=2.0, model_load_s=55.0, jitter=0.2),
        seed=7,
    ),
    # Bursty synthetic load on two pools of different speed: requests wait in the gateway until the
    # first pods are Ready, queue on KV capacity and the batch limit, long prompts are prefilled in
    # chunks, some requests never fit and a full waiting queue refuses others.
    "overload": Scenario(
        "overload", 600.0, 0,
        ((0.0, 2), (120.0, 5), (270.0, 2), (285.0, 6), (450.0, 3)),
        "least_loaded",
        ((NodePool("fast", "H100", gpus_per_node=2, initial_nodes=1, max_nodes=1), 1.0, _engine(60_000, seqs=24, waiting=40)),
         (NodePool("slow", "A100", gpus_per_node=2, initial_nodes=0, max_nodes=2, provisioning_delay_s=90.0), 1.8, _engine(40_000, seqs=16, waiting=40))),
        PodLifecycle(image_pull_s=20.0, image_pull_cached_s=2.0, model_load_s=40.0, jitter=0.3),
        seed=11, rates=(3.0, 30.0, 6.0, 24.0),
    ),
    # The random router draws from the cluster's generator, interleaved with start-up jitter.
    "random-router": Scenario(
        "random-router", 300.0, 3,
        ((45.0, 5), (180.0, 2)),
        "random",
        ((NodePool("h100", "H100", gpus_per_node=8, initial_nodes=1, max_nodes=1), 1.0, _engine(300_000)),),
        PodLifecycle(jitter=0.2),
        seed=3, rates=(3.0, 8.0, 4.0, 6.0),
    ),
    # The simulator's own latency model (CUDA-graph kernel timing) on the conversation trace, over a
    # changing fleet, with the least-loaded router.
    "conv-roofline": Scenario(
        "conv-roofline", 900.0, 3,
        ((90.0, 1), (240.0, 4), (480.0, 2), (630.0, 5)),
        "least_loaded",
        ((NodePool("h100", "H100", gpus_per_node=8, initial_nodes=1, max_nodes=1), 1.0, _engine(420_000)),),
        PodLifecycle(jitter=0.2),
        seed=5, latency="roofline-kernel-paged",
    ),
    # Eager wall-clock timing (the host floor binds small batches) under bursty load with chunked
    # prefill and a small batch limit.
    "burst-wall": Scenario(
        "burst-wall", 600.0, 2,
        ((150.0, 4), (400.0, 1)),
        "round_robin",
        ((NodePool("h100", "H100", gpus_per_node=4, initial_nodes=1, max_nodes=1), 1.0, _engine(200_000, seqs=48, budget=1024)),),
        PodLifecycle(jitter=0.1),
        seed=13, rates=(4.0, 20.0, 2.0, 12.0), latency="roofline-wall-eager",
    ),
}

#: The recorded ``kis/Autoscale-v0`` episode: 20 minutes of the conversation trace at three times its
#: rate (the first pool's latency model is :func:`roofline`), residual actions drawn from ``seed``.
ENV_EPISODE = {"duration_s": 1200.0, "rate": 3.0, "seed": 21, "initial_replicas": 2, "max_replicas": 8}


def synthetic_workload(duration_s: float, rates: tuple[float, ...], seed: int) -> Workload:
    """Piecewise-Poisson arrivals (one rate per equal part of the window) with heavy-tailed prompts, from an explicit generator."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.0, duration_s, len(rates) + 1)
    arrivals = np.concatenate([np.sort(rng.uniform(a, b, rng.poisson(rate * (b - a))))
                               for a, b, rate in zip(edges[:-1], edges[1:], rates)])
    n = len(arrivals)
    prompts = np.clip(rng.lognormal(6.5, 1.0, n), 1, 70_000).astype(np.int64)
    outputs = np.clip(rng.lognormal(5.0, 1.0, n), 1, 4_000).astype(np.int64)
    return Workload(arrivals, prompts, outputs, duration_s, "synthetic")


def scenario_workload(scenario: Scenario) -> Workload:
    if scenario.name.startswith("conv"):
        from simulator.workloads.catalog import load_trace
        from simulator.workloads.ops import window

        return window(load_trace(CONV_TRACE, "azure"), 0.0, scenario.duration_s)
    return synthetic_workload(scenario.duration_s, scenario.rates, scenario.seed)


def run(scenario: Scenario, workload: Workload) -> dict[str, np.ndarray]:
    """Drive the cluster through the scenario; every recorded value, as named arrays."""
    config = ClusterConfig(pools=tuple(p for p, _, _ in scenario.pools), lifecycle=scenario.lifecycle, router=scenario.router)
    runtimes = tuple(PoolRuntime(pool, latency_model(scenario.latency, slow), engine, price_per_gpu_s=(3.0 + i) / 3600.0, speed=1.0 / slow)
                     for i, (pool, slow, engine) in enumerate(scenario.pools))
    cluster = Cluster(config, workload, runtimes, initial_replicas=scenario.initial_replicas, rng=np.random.default_rng(scenario.seed))
    schedule = list(scenario.schedule)
    snapshots: list[dict[str, float]] = []
    counters: list[list[float]] = []
    t = 0.0
    while True:
        while schedule and schedule[0][0] <= t:
            cluster.scale(schedule.pop(0)[1])
        if t >= scenario.duration_s:
            break
        t = min(t + INTERVAL_S, scenario.duration_s)
        cluster.run_until(t)
        snapshots.append(cluster.snapshot())
        phases = cluster.pods_by_phase()
        counters.append([cluster.desired, cluster.ready_replicas, cluster.starting_replicas, cluster.gpus_in_use, cluster.cost_usd(),
                         cluster.gpu_seconds(), cluster.rejected, cluster.unserved, cluster.scale_events, len(cluster.finished),
                         phases["Pending"], phases["Draining"]])
    cluster.finish()
    keys = sorted(snapshots[0])
    out = {"snapshot_keys": np.array(keys), "snapshots": np.array([[s[k] for k in keys] for s in snapshots], dtype=np.float64),
           "counters": np.array(counters, dtype=np.float64), "final": np.array([cluster.rejected, cluster.unserved, len(cluster.finished)])}
    finished = np.array(cluster.finished, dtype=object).reshape(-1, len(REQUEST_COLUMNS))
    for j, column in enumerate(REQUEST_COLUMNS):
        dtype = np.int64 if column in ("rid", "prompt_tokens", "output_tokens") else np.float64
        out[f"req_{column}"] = finished[:, j].astype(dtype)
    return out


def env_workload() -> Workload:
    from simulator.workloads.catalog import load_trace
    from simulator.workloads.ops import scale_rate, window

    episode = ENV_EPISODE
    trace = window(load_trace(CONV_TRACE, "azure"), 0.0, episode["duration_s"])
    return scale_rate(trace, episode["rate"], np.random.default_rng(episode["seed"]))


def run_env(workload: Workload) -> dict[str, np.ndarray]:
    """One ``kis/Autoscale-v0`` episode of :data:`ENV_EPISODE`: observations, rewards, step infos and finished requests."""
    from simulator.envs.autoscale import AutoscaleEnv

    episode = ENV_EPISODE
    pool = NodePool("h100", "H100", gpus_per_node=8, initial_nodes=1, max_nodes=1)
    config = ClusterConfig(pools=(pool,), lifecycle=PodLifecycle(image_pull_s=20.0, image_pull_cached_s=2.0, model_load_s=45.0, jitter=0.2))
    pools = (PoolRuntime(pool, roofline(), _engine(420_000), price_per_gpu_s=4.0 / 3600.0),)
    env = AutoscaleEnv(config, lambda rng: workload, pools=pools, initial_replicas=episode["initial_replicas"],
                       max_replicas=episode["max_replicas"])
    actions = np.random.default_rng(episode["seed"])
    obs, _ = env.reset(seed=episode["seed"])
    observations, rewards, infos = [obs], [], []
    keys = ("cost_usd", "slo_misses", "desired", "ready", "starting", "gpus_billed", "finished", "completed", "proposal")
    truncated = False
    while not truncated:
        obs, reward, _, truncated, info = env.step(int(actions.integers(env.action_space.n)))
        observations.append(obs)
        rewards.append(reward)
        infos.append([info[k] for k in keys])
    finished = np.array(env._cluster.finished, dtype=object).reshape(-1, len(REQUEST_COLUMNS))
    out = {"observations": np.array(observations), "rewards": np.array(rewards, dtype=np.float64),
           "infos": np.array(infos, dtype=np.float64), "info_keys": np.array(keys)}
    for j, column in enumerate(REQUEST_COLUMNS):
        out[f"req_{column}"] = finished[:, j].astype(np.int64 if column in ("rid", "prompt_tokens", "output_tokens") else np.float64)
    return out


def reference_path(name: str) -> Path:
    return DATA / f"trajectory_{name}.npz"


def first_difference(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> str | None:
    """``None`` when every recorded value is equal (NaN equals NaN), else where the first difference is."""
    for key, expected in reference.items():
        got = actual.get(key)
        if got is None or got.shape != expected.shape:
            return f"{key}: shape {None if got is None else got.shape} != recorded {expected.shape}"
        if expected.dtype.kind in "US":
            if not np.array_equal(got, expected):
                return f"{key}: {got.tolist()} != recorded {expected.tolist()}"
            continue
        same = (got == expected) | (np.isnan(got) & np.isnan(expected)) if expected.dtype.kind == "f" else got == expected
        if not np.all(same):
            index = tuple(int(i) for i in np.argwhere(~same)[0])
            return f"{key}{list(index)}: {got[index]!r} != recorded {expected[index]!r}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description="Record the reference cluster trajectories under tests/data/, or compare with them.")
    parser.add_argument("--record", action="store_true", help="overwrite the recorded references")
    args = parser.parse_args()
    same = True
    for name, scenario in SCENARIOS.items():
        out = run(scenario, scenario_workload(scenario))
        n = len(out["req_rid"])
        print(f"{name}: {len(out['snapshots'])} ticks, {n} finished, rejected {int(out['final'][0])}, unserved {int(out['final'][1])}")
        same &= _record_or_compare(name, out, args.record)
    out = run_env(env_workload())
    print(f"env: {len(out['rewards'])} steps, {len(out['req_rid'])} finished, return {out['rewards'].sum():.3f}")
    same &= _record_or_compare("env", out, args.record)
    return 0 if same else 1


def _record_or_compare(name: str, out: dict[str, np.ndarray], record: bool) -> bool:
    """Whether ``out`` is the recorded reference (always, after recording it)."""
    if record:
        DATA.mkdir(exist_ok=True)
        np.savez_compressed(reference_path(name), **out)
        return True
    difference = first_difference(dict(np.load(reference_path(name))), out)
    print("  ", difference or "same as recorded")
    return difference is None


if __name__ == "__main__":
    raise SystemExit(main())
