"""KV-cache capacity of a replica from GPU memory and model size."""

from __future__ import annotations

import math

GIB = 1024**3


def kv_capacity_tokens(
    gpu_memory_bytes: float,
    weight_bytes: float,
    kv_bytes_per_token: float,
    *,
    gpu_memory_utilization: float = 0.9,
    activation_reserve_bytes: float = 2 * GIB,
) -> int:
    """Tokens the KV cache holds, as vLLM sizes it.

    vLLM claims ``gpu_memory_utilization`` of the device, keeps the weights and
    a reserve for activations (profiled at start-up; a fixed reserve here), and
    gives the rest to KV blocks.

    :raises ValueError: when the weights and reserve do not fit.
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if kv_bytes_per_token <= 0:
        raise ValueError(f"kv_bytes_per_token must be positive, got {kv_bytes_per_token}")
    free = gpu_memory_bytes * gpu_memory_utilization - weight_bytes - activation_reserve_bytes
    if free < kv_bytes_per_token:
        raise ValueError(
            f"model does not fit: {weight_bytes / GIB:.1f} GiB of weights + {activation_reserve_bytes / GIB:.1f} GiB reserve "
            f"exceed {gpu_memory_utilization:.0%} of {gpu_memory_bytes / GIB:.1f} GiB"
        )
    return int(math.floor(free / kv_bytes_per_token))
