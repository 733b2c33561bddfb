"""GPU specifications: datasheet peak bf16 throughput, memory bandwidth and size, and a price.

Peak figures are dense (no sparsity) bf16 tensor-core throughput: NVIDIA's
datasheets print the sparse figure with an asterisk, twice the dense one.
Prices are assumed on-demand prices per GPU-hour in USD, rounded, inside the
range that hyperscalers and GPU clouds listed in 2025; they are not a quote
(override ``hourly_price_per_gpu`` per node pool).
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
    # NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100), SXM column: BF16 1,979 TFLOPS
    # with sparsity -> 989 dense; GPU memory 80 GB; bandwidth 3.35 TB/s. Price: assumed $4.00.
    GpuSpec("H100", 989e12, 3.35e12, 80, 4.00, ("h100-sxm", "h100-80gb", "nvidia h100 80gb hbm3"), "H100 SXM5 80GB"),
    # NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200), SXM column: BF16 1,979 TFLOPS
    # with sparsity -> 989 dense; 141 GB HBM3e; 4.8 TB/s. Price: assumed $5.00.
    GpuSpec("H200", 989e12, 4.8e12, 141, 5.00, ("h200-sxm", "nvidia h200"), "H200 SXM 141GB"),
    # NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100), 80GB SXM column: BF16 Tensor Core
    # 312 TFLOPS (624 with sparsity); 80 GB HBM2e; 2,039 GB/s. Price: assumed $3.00.
    GpuSpec("A100", 312e12, 2.039e12, 80, 3.00, ("a100-80gb", "a100-sxm", "nvidia a100-sxm4-80gb"), "A100 SXM4 80GB"),
    # NVIDIA L40S datasheet (nvidia.com/en-us/data-center/l40s): BF16 Tensor Core 362.05 TFLOPS (733 with
    # sparsity); 48 GB GDDR6; 864 GB/s. Price: assumed $1.90.
    GpuSpec("L40S", 362e12, 0.864e12, 48, 1.90, ("l40s-48gb", "nvidia l40s"), "L40S 48GB"),
    # NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4): BF16 242 TFLOPS with sparsity ->
    # 121 dense; 24 GB GDDR6; 300 GB/s. Price: assumed $0.80.
    GpuSpec("L4", 121e12, 0.3e12, 24, 0.80, ("l4-24gb", "nvidia l4"), "L4 24GB"),
    # NVIDIA A10 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/products/a10-gpu): BF16 Tensor Core
    # 250 TFLOPS with sparsity -> 125 dense; 24 GB GDDR6; 600 GB/s (AWS's A10G has the same memory). Price: assumed $1.00.
    GpuSpec("A10", 125e12, 0.6e12, 24, 1.00, ("a10-24gb", "a10g", "nvidia a10", "nvidia a10g"), "A10 24GB (A10G similar)"),
)


def get_gpu(name: str) -> GpuSpec:
    """The spec of a GPU by name or alias, case-insensitive."""
    key = name.strip().lower()
    for gpu in GPUS:
        if key == gpu.name.lower() or key in gpu.aliases:
            return gpu
    raise ValueError(f"unknown GPU {name!r}; known: {', '.join(g.name for g in GPUS)}")
