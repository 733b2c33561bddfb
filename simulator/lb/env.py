"""``kis/LoadBalance-v0``: route each arriving request to one of several LLM servers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simulator.engine.replica import EngineConfig, ReplicaEngine
from simulator.workloads.workload import Workload

WINDOWS = (5, 10, 20)
SLO_S = 2.0


@dataclass(frozen=True)
class ServerSpec:
    """A server of ``tokens_per_s`` throughput (prompt and generated tokens alike) and a concurrency limit.

    Its iteration time is ``(prefill tokens + decode batch) / tokens_per_s``, so a full
    batch of ``concurrency`` sequences generates ``tokens_per_s`` tokens per second.
    """

    name: str
    tokens_per_s: float
    concurrency: int

    def __post_init__(self) -> None:
        if self.tokens_per_s <= 0 or self.concurrency < 1:
            raise ValueError(f"server {self.name}: tokens_per_s must be positive and concurrency >= 1")


class ThroughputModel:
    """IterationTimeModel of a :class:`ServerSpec`."""

    def __init__(self, tokens_per_s: float, overhead_ms: float = 1.0) -> None:
        self.ms_per_token = 1000.0 / tokens_per_s
        self.overhead_ms = overhead_ms

    def iteration_ms(self, prefill_tokens, prefill_context, decode_batch, decode_context, prefill_seqs=1):
        return self.overhead_ms + self.ms_per_token * (prefill_tokens + decode_batch)

    def prefill_ms(self, batch, prompt_len):
        return self.iteration_ms(batch * prompt_len, 0.0, 0, 0.0)

    def decode_ms(self, batch, context_len):
        return self.iteration_ms(0, 0.0, batch, 0.0)


@dataclass(frozen=True)
class RewardWeights:
    """Per-step reward terms (all documented in :class:`LoadBalanceEnv`)."""

    processing: float = 1.0
    backlog: float = 0.1
    overload: float = 1.0
    balance: float = 0.2
    completion: float = 0.05
    slo_penalty: float = 1.0


class Server:
    """A replica engine with the bookkeeping the router and the observation need."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.engine = ReplicaEngine(ThroughputModel(spec.tokens_per_s), EngineConfig(10**9, spec.concurrency, max(4096, spec.concurrency + 1)))
        self.recent: deque[float] = deque(maxlen=10)

    @property
    def num_outstanding(self) -> int:
        return self.engine.num_outstanding

    @property
    def outstanding_tokens(self) -> int:
        return self.engine.outstanding_tokens

    @property
    def speed(self) -> float:
        return self.spec.tokens_per_s / 5000.0


class LoadBalanceEnv(gym.Env):
    """Route LLM requests across servers; one step per arriving request.

    **Action**: ``Discrete(n_servers)``, the server that gets the request.

    **Observation** (float32): request features, then 4 per server.

    ========  ===================================================================
    index     feature
    ========  ===================================================================
    0         total tokens of this request (prompt + output), robust-scaled
    1-6       rolling mean and std of total tokens over the last 5, 10, 20 requests (robust-scaled)
    7         total tokens of the previous request (lag-1, robust-scaled)
    8-9       hour of day / 24 and day of week / 7 of the arrival
    10+4i     server i: waiting requests / its concurrency
    11+4i     server i: outstanding tokens / (its tokens per s x 2 s)
    12+4i     server i: mean response time of its last 10 requests / 2 s
    13+4i     server i: running requests / its concurrency
    ========  ===================================================================

    Robust scaling: ``(x - median) / IQR`` with median and IQR of the episode's
    first 200 requests (a warm-up sample), clipped to [-10, 10].

    **Reward** (weights :class:`RewardWeights`), at each step:
    ``- processing * estimated processing time of the request on the chosen server (s)
    - backlog * waiting requests on it / its concurrency
    - overload * [it is at its concurrency limit]
    + balance * (1 - coefficient of variation of outstanding tokens / throughput over servers)
    + completion * requests finished since the last step
    - slo_penalty * finished requests whose response time exceeded 2 s``.
    Response-time terms arrive when a request finishes (delayed credit).

    **Episode**: the requests of one workload window (a scenario); truncated
    after the last request, and the remaining ones are served to count their
    SLO misses in the final reward.

    **Arguments**: ``servers`` (:class:`ServerSpec`), ``workloads``
    (``rng -> Workload``), ``weights``.
    """

    metadata = {"render_modes": []}

    def __init__(self, servers: Sequence[ServerSpec], workloads: Callable[[np.random.Generator], Workload], weights: RewardWeights = RewardWeights()) -> None:
        if len(servers) < 2:
            raise ValueError("load balancing needs at least two servers")
        self.specs = tuple(servers)
        self.sample = workloads
        self.weights = weights
        n = len(self.specs)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(10 + 4 * n,), dtype=np.float32)
        self.action_space = spaces.Discrete(n)
        self.servers: list[Server] = []

    # ----------------------------------------------------------- helpers
    def _scaled(self, x: float) -> float:
        return float(np.clip((x - self._median) / self._iqr, -10.0, 10.0))

    def _observe(self) -> np.ndarray:
        i = self._i
        total = self._totals[i]
        history = self._totals[max(0, i - 20) : i] if i else self._totals[:1]
        features = [self._scaled(total)]
        for window in WINDOWS:
            recent = history[-window:]
            features += [self._scaled(float(np.mean(recent))), float(np.clip(np.std(recent) / self._iqr, 0, 10))]
        features.append(self._scaled(float(self._totals[i - 1])) if i else 0.0)
        t = self._start_tod + float(self._workload.arrival_s[i])
        features += [(t % 86400.0) / 86400.0, (t // 86400.0 % 7) / 7.0]
        for server in self.servers:
            engine, spec = server.engine, server.spec
            features += [
                min(10.0, engine.num_waiting / spec.concurrency),
                min(10.0, engine.outstanding_tokens / (spec.tokens_per_s * SLO_S)),
                min(10.0, (float(np.mean(server.recent)) if server.recent else 0.0) / SLO_S),
                engine.num_running / spec.concurrency,
            ]
        return np.asarray(features, dtype=np.float32)

    def _collect(self) -> tuple[int, int]:
        done = late = 0
        for server in self.servers:
            for finished in server.engine.finished:
                server.recent.append(finished.e2e_s)
                self.response_times.append(finished.e2e_s)
                done += 1
                late += finished.e2e_s > SLO_S
            server.engine.finished.clear()
        return done, late

    # --------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._workload = options["workload"] if options and "workload" in options else self.sample(self.np_random)
        if len(self._workload) < 2:
            raise ValueError("a load-balancing episode needs at least two requests")
        self._totals = (self._workload.prompt_tokens + self._workload.output_tokens).astype(np.float64)
        warm = self._totals[:200]
        q1, self._median, q3 = np.percentile(warm, [25, 50, 75])
        self._iqr = max(q3 - q1, 1.0)
        self._start_tod = self._workload.start_time_of_day_s
        self.servers = [Server(spec) for spec in self.specs]
        self.response_times: list[float] = []
        self.queue_samples: list[int] = []
        self._i = 0
        return self._observe(), {}

    def step(self, action):
        if not self.servers:
            raise RuntimeError("call reset() before step()")
        w, i = self.weights, self._i
        server = self.servers[int(action)]
        arrival = float(self._workload.arrival_s[i])
        prompt, output = int(self._workload.prompt_tokens[i]), int(self._workload.output_tokens[i])
        for s in self.servers:
            s.engine.advance(arrival)
        spec, engine = server.spec, server.engine
        at_limit = engine.num_running >= spec.concurrency
        estimate = (engine.outstanding_tokens + prompt + output) / spec.tokens_per_s
        backlog = engine.num_waiting / spec.concurrency
        engine.submit(i, arrival, prompt, output)
        loads = np.array([s.engine.outstanding_tokens / s.spec.tokens_per_s for s in self.servers])
        balance = 1.0 - min(1.0, float(loads.std() / loads.mean())) if loads.mean() > 0 else 1.0
        self.queue_samples.append(sum(s.engine.num_waiting for s in self.servers))
        self._i += 1
        truncated = self._i >= len(self._workload)
        if truncated:
            for s in self.servers:
                s.engine.drain()
        done, late = self._collect()
        reward = (-w.processing * estimate - w.backlog * backlog - w.overload * at_limit + w.balance * balance
                  + w.completion * done - w.slo_penalty * late)
        obs = self._observe() if not truncated else np.zeros(self.observation_space.shape, dtype=np.float32)
        return obs, float(reward), False, truncated, {"server": int(action), "finished": done, "late": late}
