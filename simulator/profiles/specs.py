"""GPU specifications: datasheet peak bf16 throughput, memory bandwidth and size, and a price.

Peak figures are dense (no sparsity) bf16 tensor-core throughput from NVIDIA
datasheets. Prices are typical on-demand cloud list prices per GPU-hour in
USD (2025-2026; they vary by provider and region; override them per node pool).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    """:param name: canonical name. :param peak_bf16_flops: dense bf16 FLOP/s.
    :param memory_bandwidth: HBM/GDDR bytes/s. :param memory_gib: device memory, GiB.
    :param hourly_price_usd: on-demand USD per GPU-hour. :param aliases: other accepted names."""

    name: str
    peak_bf16_flops: float
    memory_bandwidth: float
    memory_gib: float
    hourly_price_usd: float
    aliases: tuple[str, ...] = ()
    note: str = ""


GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H100", 989e12, 3.35e12, 80, 4.00, ("h100-sxm", "h100-80gb", "nvidia h100 80gb hbm3"), "H100 SXM5 80GB"),
    GpuSpec("H200", 989e12, 4.8e12, 141, 5.00, ("h200-sxm", "nvidia h200"), "H200 SXM 141GB"),
    GpuSpec("A100", 312e12, 2.039e12, 80, 3.00, ("a100-80gb", "a100-sxm", "nvidia a100-sxm4-80gb"), "A100 SXM4 80GB"),
    GpuSpec("L40S", 362e12, 0.864e12, 48, 1.90, ("l40s-48gb",), "L40S 48GB"),
    GpuSpec("L4", 121e12, 0.3e12, 24, 0.80, ("l4-24gb", "nvidia l4"), "L4 24GB"),
    GpuSpec("A10", 125e12, 0.6e12, 24, 1.00, ("a10-24gb", "a10g"), "A10 24GB (A10G similar)"),
)


def get_gpu(name: str) -> GpuSpec:
    """The spec of a GPU by name or alias, case-insensitive."""
    key = name.strip().lower()
    for gpu in GPUS:
        if key == gpu.name.lower() or key in gpu.aliases:
            return gpu
    raise ValueError(f"unknown GPU {name!r}; known: {', '.join(g.name for g in GPUS)}")
