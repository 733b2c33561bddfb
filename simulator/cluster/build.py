"""Resolve a :class:`ClusterConfig` into runnable pools and build the cluster."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from simulator.cluster.cluster import Cluster, PoolRuntime
from simulator.cluster.config import ClusterConfig, NodePool
from simulator.engine.capacity import GIB, kv_capacity_tokens
from simulator.engine.replica import EngineConfig
from simulator.profiles.latency import IterationTimeModel
from simulator.workloads.workload import Workload

#: Reference batch for the relative speed of heterogeneous pools.
_SPEED_BATCH, _SPEED_CONTEXT = 32, 1024


def resolve_pool(pool: NodePool, config: ClusterConfig, model: IterationTimeModel | None = None) -> PoolRuntime:
    """Latency model, KV capacity and price of one pool for the configured model."""
    from simulator.profiles import default_latency_model, get_gpu, load_shape

    gpu = get_gpu(pool.gpu)
    shape = load_shape(config.model)
    latency = model if model is not None else default_latency_model(gpu=pool.gpu, model=config.model, timing=config.timing, engine=config.engine,
                                                                    calibration=tuple(config.calibration))
    capacity = kv_capacity_tokens(
        gpu.memory_gib * GIB,
        shape.weight_bytes(),
        shape.kv_bytes_per_token(),
        gpu_memory_utilization=config.gpu_memory_utilization,
    )
    engine = EngineConfig(
        kv_capacity_tokens=capacity,
        max_num_seqs=config.max_num_seqs,
        max_batched_tokens=config.max_batched_tokens,
    )
    price = pool.hourly_price_per_gpu if pool.hourly_price_per_gpu is not None else gpu.hourly_price_usd
    return PoolRuntime(pool=pool, model=latency, engine=engine, price_per_gpu_s=price / 3600.0)


def resolve_pools(
    config: ClusterConfig, models: Mapping[str, IterationTimeModel] | None = None
) -> tuple[PoolRuntime, ...]:
    """Every pool resolved; ``speed`` is relative to the first pool's decode throughput."""
    models = models or {}
    runtimes = [resolve_pool(p, config, models.get(p.name)) for p in config.pools]
    reference = runtimes[0].model.decode_ms(_SPEED_BATCH, _SPEED_CONTEXT)
    return tuple(
        PoolRuntime(r.pool, r.model, r.engine, r.price_per_gpu_s, speed=reference / r.model.decode_ms(_SPEED_BATCH, _SPEED_CONTEXT))
        for r in runtimes
    )


def build_cluster(
    config: ClusterConfig,
    workload: Workload,
    *,
    initial_replicas: int,
    rng: np.random.Generator,
    pools: tuple[PoolRuntime, ...] | None = None,
    windows: Mapping[str, float] | None = None,
) -> Cluster:
    """A cluster ready to replay ``workload``; ``pools`` skips resolution (reuse across episodes);
    ``windows``: the KPA windows of the concurrency averages (see :class:`Cluster`)."""
    return Cluster(config, workload, pools or resolve_pools(config), initial_replicas=initial_replicas, rng=rng, windows=windows)
