"""Per-replica capacity at the SLO, measured on the simulator's replica engine.

For each point of a grid of mean prompt and output lengths, one replica
(:class:`~simulator.engine.replica.ReplicaEngine` with the target's latency
model and engine limits) serves Poisson arrivals with log-normal token
lengths of those means; bisection on the rate finds the largest one at which
the share of requests meeting the SLO stays at the target (default 99%).
When even a light load cannot reach the target (prompts too long for the
TTFT bound), the target is the light-load attainment less ``1 - target``:
capacity is where queueing starts to cost attainment, not where a bound no
replica count can meet is missed. The numbers become a
:class:`controller.capacity.CapacityProfile`, which the controller reads
without importing the simulator.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.capacity import CapacityProfile
from controller.slo import SLO
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool
from simulator.engine.replica import EngineConfig, ReplicaEngine
from simulator.profiles.latency import IterationTimeModel
from simulator.workloads.workload import Workload

PROMPT_GRID: tuple[float, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
OUTPUT_GRID: tuple[float, ...] = (8, 32, 128, 512, 2048)
#: Log-normal shape of prompt and output lengths around their means (the Azure traces' spread is about this).
PROMPT_SIGMA, OUTPUT_SIGMA = 0.8, 1.0
#: Fleet size of the pooled measurement.
POOL_SIZE = 4
#: Bump when the measurement changes, so cached profiles are recomputed.
_VERSION = 3


@dataclass(frozen=True)
class Trial:
    """One replica at one rate: the share of requests meeting the SLO, and the mean requests in flight
    (rate x mean end-to-end latency, Little's law), both after a warm-up."""

    rate: float
    attainment: float
    concurrency: float


def _lengths(rng: np.random.Generator, mean: float, sigma: float, n: int, cap: int) -> np.ndarray:
    mu = math.log(mean) - sigma * sigma / 2
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, cap).astype(np.int64)


def trial(model: IterationTimeModel, engine: EngineConfig, slo: SLO, rate: float, prompt_mean: float, output_mean: float,
          *, requests: int = 1500, seed: int = 0, warmup: float = 0.1, replicas: int = 1, router: str = "least_connections") -> Trial:
    """``replicas`` replicas (behind ``router`` when more than one) serving Poisson arrivals at ``rate`` req/s
    *per replica*, with log-normal token lengths of these means; ``requests`` per replica."""
    rng = np.random.default_rng(seed)
    n = requests * replicas
    arrivals = np.cumsum(rng.exponential(1.0 / (rate * replicas), n))
    outputs = _lengths(rng, output_mean, OUTPUT_SIGMA, n, max(1, engine.kv_capacity_tokens // 4))
    prompts = _lengths(rng, prompt_mean, PROMPT_SIGMA, n, max(1, engine.kv_capacity_tokens - int(outputs.max())))
    if replicas == 1:
        replica = ReplicaEngine(model, engine)
        for i in range(n):
            t = float(arrivals[i])
            replica.advance(t)
            replica.submit(i, t, int(prompts[i]), int(outputs[i]))
        replica.drain()
        finished = [(f.rid, f.ttft_s, f.tpot_s, f.e2e_s) for f in replica.finished]
    else:
        finished = _fleet(model, engine, replicas, router, Workload(arrivals, prompts, outputs, float(arrivals[-1]), "capacity"))
    skip = int(n * warmup)
    measured = [f for f in finished if f[0] >= skip]
    if not measured:
        return Trial(rate, 0.0, 0.0)
    met = np.mean([slo.met(ttft, tpot) for _, ttft, tpot, _ in measured])
    return Trial(rate, float(met), rate * float(np.mean([e2e for *_, e2e in measured])))


def _fleet(model: IterationTimeModel, engine: EngineConfig, replicas: int, router: str,
           workload: Workload) -> list[tuple[int, float, float, float]]:
    """A fixed fleet on the cluster simulator: (request id, TTFT, TPOT, E2E) of every finished request."""
    from simulator.cluster.cluster import PoolRuntime
    from simulator.runner import simulate

    pool = NodePool(name="capacity", gpus_per_node=replicas, initial_nodes=1, max_nodes=1)
    config = ClusterConfig(pools=(pool,), router=router)
    result = simulate(workload, config, replicas=replicas, pools=(PoolRuntime(pool, model, engine, 0.0),), keep_snapshots=False,
                      interval_s=max(workload.duration_s, 1.0))
    table = result.requests
    order = np.argsort(table.arrival_s, kind="stable")  # request ids follow arrival order
    ids = np.empty(len(order), dtype=np.int64)
    ids[order] = np.arange(len(order))
    return list(zip(ids.tolist(), table.ttft_s.tolist(), table.tpot_s.tolist(), table.e2e_s.tolist()))


def attainment_at(model: IterationTimeModel, engine: EngineConfig, slo: SLO, rate: float, prompt_mean: float, output_mean: float,
                  **kwargs: float) -> float:
    """Share of requests meeting ``slo`` on one replica at Poisson ``rate`` (req/s)."""
    return trial(model, engine, slo, rate, prompt_mean, output_mean, **kwargs).attainment  # type: ignore[arg-type]


def max_rate(model: IterationTimeModel, engine: EngineConfig, slo: SLO, prompt_mean: float, output_mean: float, *,
             attainment: float = 0.99, iterations: int = 12, requests: int = 1500, seed: int = 0, replicas: int = 1,
             router: str = "least_connections") -> tuple[Trial, list[Trial]]:
    """The trial at the largest Poisson rate per replica that ``replicas`` replicas serve at ``attainment``
    of the achievable share, and every trial."""
    # Upper bounds: a full batch decoding at its fastest, and prefill at a full token budget.
    decode_bound = engine.max_num_seqs * 1000.0 / (output_mean * model.decode_ms(1, 1))
    budget = engine.max_batched_tokens
    prefill_bound = 1000.0 * budget / (prompt_mean * model.prefill_ms(1, budget))
    hi = 2.0 * min(decode_bound, prefill_bound)
    lo = hi / 1e4
    run = dict(requests=requests, seed=seed, replicas=replicas, router=router)
    trials = [trial(model, engine, slo, lo, prompt_mean, output_mean, **run)]
    best, target = trials[0], trials[0].attainment - (1.0 - attainment)
    for _ in range(iterations):
        mid = math.sqrt(lo * hi)
        got = trial(model, engine, slo, mid, prompt_mean, output_mean, **run)
        trials.append(got)
        if got.attainment >= target:
            lo, best = mid, got
        else:
            hi = mid
    return best, trials


def capacity_profile(model: IterationTimeModel, engine: EngineConfig, slo: SLO, *, attainment: float = 0.99,
                     prompt_grid: Sequence[float] = PROMPT_GRID, output_grid: Sequence[float] = OUTPUT_GRID,
                     source: str = "", requests: int = 1500, seed: int = 0, iterations: int = 12, pool_size: int = POOL_SIZE,
                     router: str = "least_connections") -> CapacityProfile:
    """The grid of :func:`max_rate` for one replica and for a fleet of ``pool_size``, as a :class:`CapacityProfile`."""
    common = dict(attainment=attainment, seed=seed, iterations=iterations)
    alone = [[max_rate(model, engine, slo, p, o, requests=requests, **common)[0] for o in output_grid] for p in prompt_grid]
    pooled = [[max_rate(model, engine, slo, p, o, requests=max(200, requests // 2), replicas=pool_size, router=router, **common)[0]
               for o in output_grid] for p in prompt_grid]
    note = f"{source}; SLO TTFT {slo.ttft_s * 1000:g} ms, TPOT {slo.tpot_s * 1000:g} ms; {attainment:.0%} of requests; {router}"
    return CapacityProfile(tuple(float(p) for p in prompt_grid), tuple(float(o) for o in output_grid),
                           tuple(tuple(t.rate for t in row) for row in alone), note.lstrip("; "),
                           tuple(tuple(max(t.concurrency, 1e-3) for t in row) for row in alone),
                           tuple(tuple(t.rate for t in row) for row in pooled), pool_size)


def _fingerprint(model: IterationTimeModel, engine: EngineConfig, slo: SLO, attainment: float, router: str) -> str:
    """A digest of what the profile depends on: iteration times at probe points, engine limits, SLO and target."""
    probes = [model.iteration_ms(p, p * (p + 1) / 2.0, b, b * c, 1 if p else 0)
              for p in (0, 64, 512, 2048) for b in (0, 1, 16, 128) for c in (128, 2048) if p or b]
    text = json.dumps([[round(v, 9) for v in probes], engine.kv_capacity_tokens, engine.max_num_seqs, engine.max_batched_tokens,
                       engine.max_waiting, slo.ttft_s, slo.tpot_s, attainment, PROMPT_GRID, OUTPUT_GRID, PROMPT_SIGMA, OUTPUT_SIGMA,
                       router, POOL_SIZE, _VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_dir() -> Path:
    """Where computed profiles are kept (``$KIS_CACHE_DIR``, else ``~/.cache/kis-s``)."""
    return Path(os.environ.get("KIS_CACHE_DIR") or Path.home() / ".cache" / "kis-s") / "capacity"


#: Profiles shipped with the package (the built-in GPUs and models, the default SLO), by the same key:
#: a fresh machine reads them instead of measuring. ``bash scripts/ship_capacity`` refreshes them.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "capacity"


def _read(path: Path) -> CapacityProfile | None:
    if not path.is_file():
        return None
    try:
        return CapacityProfile.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None  # a corrupt entry is recomputed


_memory: dict[str, CapacityProfile] = {}


def pool_capacity(pool: PoolRuntime, slo: SLO = SLO(), attainment: float = 0.99, *, label: str = "",
                  router: str = "least_connections") -> CapacityProfile:
    """The capacity profile of one resolved pool, computed once per distinct latency model, engine and SLO
    (kept in memory and on disk, :func:`cache_dir`)."""
    key = _fingerprint(pool.model, pool.engine, slo, attainment, router)
    if key in _memory:
        return _memory[key]
    path = cache_dir() / f"{key}.json"
    profile = _read(SHIPPED_DIR / f"{key}.json") or _read(path)
    if profile is None:
        profile = capacity_profile(pool.model, pool.engine, slo, attainment=attainment, source=label or pool.pool.gpu, router=router)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(profile.to_dict()))
            tmp.replace(path)
        except OSError:
            pass  # a read-only home only costs the recomputation
    _memory[key] = profile
    return profile


def cluster_capacity(config: ClusterConfig, slo: SLO = SLO(), attainment: float = 0.99,
                     pools: tuple[PoolRuntime, ...] | None = None) -> CapacityProfile:
    """The capacity profile of the cluster's first (preferred) pool."""
    from simulator.cluster.build import resolve_pools

    pool = (pools or resolve_pools(config))[0]
    return pool_capacity(pool, slo, attainment, label=f"{pool.pool.gpu} x {config.model} ({config.timing})", router=config.router)
