"""A heterogeneous variant: an H100 pool preferred, L4 nodes when it is full."""

from __future__ import annotations

from typing import Any

from simulator.cluster.config import ClusterConfig, NodePool
from simulator.envs.autoscale import AutoscaleEnv


def make_hetero_env(**kwargs: Any) -> AutoscaleEnv:
    """``kis/AutoscaleHetero-v0``: 4 H100 GPUs, then up to 8 L4 GPUs, least-loaded routing."""
    cluster = ClusterConfig(
        pools=(
            NodePool(name="h100", gpu="H100", gpus_per_node=4, initial_nodes=1, max_nodes=1),
            NodePool(name="l4", gpu="L4", gpus_per_node=4, initial_nodes=0, max_nodes=2, provisioning_delay_s=120),
        ),
        router="least_loaded",
    )
    kwargs.setdefault("max_replicas", 12)
    return AutoscaleEnv(cluster=kwargs.pop("cluster", cluster), **kwargs)
