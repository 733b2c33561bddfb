"""Scenarios, baselines, training and evaluation of the load-balancing experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.cluster.router import make_router
from simulator.lb.env import SLO_S, LoadBalanceEnv, RewardWeights, ServerSpec
from simulator.workloads.workload import Workload

HOMOGENEOUS = (ServerSpec("a", 5000, 5), ServerSpec("b", 5000, 5), ServerSpec("c", 5000, 5))
HETEROGENEOUS = (ServerSpec("3k", 3000, 3), ServerSpec("5k", 5000, 5), ServerSpec("7k", 7000, 7))
BASELINES = ("round_robin", "least_connections", "least_loaded", "random")
ALGOS = ("ppo", "a2c", "dqn")
TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "azure2023"


def _poisson(rate: float, n: int, kind: str = "steady") -> Callable[[np.random.Generator], Workload]:
    from simulator.workloads.patterns import PatternSpec, generate_pattern

    def sample(rng: np.random.Generator) -> Workload:
        duration = n / rate
        if kind == "bursty":
            spec = PatternSpec("spike", duration_s=duration, base_rate=rate * 0.6, peak_rate=rate * 2.2, spike_start_s=duration * 0.4, spike_length_s=duration * 0.2)
        else:
            spec = PatternSpec("spike", duration_s=duration, base_rate=rate, peak_rate=rate, spike_start_s=0, spike_length_s=1)
        return generate_pattern(spec, rng, kind)

    return sample


def _trace(name: str, n: int, rate: float) -> Callable[[np.random.Generator], Workload]:
    def sample(rng: np.random.Generator) -> Workload:
        from simulator.workloads.catalog import load_trace
        from simulator.workloads.ops import compress

        workload = load_trace(TRACES / f"AzureLLMInferenceTrace_{name}.csv", "azure")
        start = int(rng.integers(0, max(1, len(workload) - n)))
        part = Workload(workload.arrival_s[start : start + n] - workload.arrival_s[start], workload.prompt_tokens[start : start + n],
                        workload.output_tokens[start : start + n], float(workload.arrival_s[start + n - 1] - workload.arrival_s[start]) + 1.0,
                        f"azure-{name}", workload.start_time_of_day_s)
        return compress(part, rate / max(part.mean_rate, 1e-9))  # bring it to the scenario's load

    return sample


@dataclass(frozen=True)
class Scenario:
    name: str
    servers: tuple[ServerSpec, ...]
    workloads: Callable[[np.random.Generator], Workload]


def scenarios(n: int = 1000) -> dict[str, Scenario]:
    """Nominal homogeneous; high-load heterogeneous (3k/3, 5k/5, 7k/7); bursty; the Azure traces."""
    out = {
        "nominal": Scenario("nominal", HOMOGENEOUS, _poisson(7.0, n)),
        "high-load-hetero": Scenario("high-load-hetero", HETEROGENEOUS, _poisson(9.0, n)),
        "bursty": Scenario("bursty", HETEROGENEOUS, _poisson(6.5, n, "bursty")),
    }
    if TRACES.is_dir():
        out["azure-code"] = Scenario("azure-code", HETEROGENEOUS, _trace("code", n, 3.0))
        out["azure-conv"] = Scenario("azure-conv", HETEROGENEOUS, _trace("conv", n, 8.0))
    return out


def make_env(scenario: Scenario, weights: RewardWeights = RewardWeights()) -> LoadBalanceEnv:
    return LoadBalanceEnv(scenario.servers, scenario.workloads, weights)


@dataclass(frozen=True)
class RouterResult:
    router: str
    scenario: str
    reward: float
    mean_response_s: float
    p95_response_s: float
    mean_queue: float
    slo_violation_rate: float
    per_server: tuple[int, ...]
    response_times: tuple[float, ...] = ()


def run_episode(env: LoadBalanceEnv, choose: Callable[[np.ndarray, LoadBalanceEnv, int], int], seed: int, name: str, scenario: str) -> RouterResult:
    obs, _ = env.reset(seed=seed)
    total, counts = 0.0, np.zeros(len(env.specs), dtype=int)
    while True:
        i = env._i
        action = choose(obs, env, i)
        counts[action] += 1
        obs, reward, _, truncated, _ = env.step(action)
        total += reward
        if truncated:
            break
    times = np.array(env.response_times)
    return RouterResult(name, scenario, total, float(times.mean()), float(np.percentile(times, 95)), float(np.mean(env.queue_samples)),
                        float(np.mean(times > SLO_S)), tuple(int(c) for c in counts), tuple(float(t) for t in times))


def baseline_chooser(name: str, seed: int) -> Callable[[np.ndarray, LoadBalanceEnv, int], int]:
    router = make_router(name, np.random.default_rng(seed))

    def choose(obs: np.ndarray, env: LoadBalanceEnv, i: int) -> int:
        w = env._workload
        return router.choose(env.servers, int(w.prompt_tokens[i]), int(w.output_tokens[i]))

    return choose


def model_chooser(model: Any) -> Callable[[np.ndarray, LoadBalanceEnv, int], int]:
    return lambda obs, env, i: int(model.predict(obs, deterministic=True)[0])


def train_agent(algo: str, scenario: Scenario, steps: int, seed: int = 0, out: Path | None = None, weights: RewardWeights = RewardWeights()) -> Any:
    """PPO, A2C or DQN with an MLP of two hidden layers of 128, learning rate 3e-4, gamma 0.99."""
    import torch
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.monitor import Monitor

    torch.set_num_threads(1)
    cls = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[algo]
    env = Monitor(make_env(scenario, weights), str(out / f"{algo}-{scenario.name}") if out else None)
    extra: dict[str, Any] = {"n_steps": 512, "batch_size": 128} if algo == "ppo" else {"learning_starts": 500, "train_freq": 4} if algo == "dqn" else {}
    model = cls("MlpPolicy", env, learning_rate=3e-4, gamma=0.99, seed=seed, verbose=0, device="cpu",
                policy_kwargs={"net_arch": [128, 128]}, **extra)
    model.learn(total_timesteps=steps)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / f"{algo}-{scenario.name}.zip")
    return model
