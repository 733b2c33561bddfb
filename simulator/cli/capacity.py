"""``kis capacity``: per-replica capacity at the SLO for a GPU and model, for ``spec.capacity``."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.table import Table

from simulator.cli.common import console, err_console, print_error, print_json


def capacity_command(
    gpu: str = typer.Option("H100", "--gpu", help="GPU name (H100, H200, A100, L40S, L4, A10)."),
    model: str = typer.Option("llama-8b", "--model", help="Built-in shape name, or a shape/profile JSON file."),
    timing: str = typer.Option("kernel", "--timing", help="kernel (CUDA-graph server such as vLLM) or wall (eager)."),
    slo_ttft_ms: float = typer.Option(500.0, "--slo-ttft-ms", min=1e-3),
    slo_tpot_ms: float = typer.Option(50.0, "--slo-tpot-ms", min=1e-3),
    attainment: float = typer.Option(0.99, "--attainment", min=0.5, max=0.9999, help="Share of requests that must meet the SLO."),
    router: str = typer.Option("least_connections", "--router", help="The router in front of the replicas."),
    max_num_seqs: int = typer.Option(256, "--max-num-seqs", min=1, help="Engine: running-batch limit (vLLM max_num_seqs)."),
    max_batched_tokens: int = typer.Option(2048, "--max-batched-tokens", min=2, help="Engine: tokens per iteration."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the YAML snippet here."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON instead of YAML."),
) -> None:
    """Measure one replica's capacity at the SLO on the latency model (and a fleet's, behind the router).

    Prints the ``capacity:`` block of an InferenceAutoscaler: the largest request rate per replica at which
    the SLO holds, on a grid of mean prompt and output lengths. The planner and the learned policy read it.
    Takes about a minute; results are cached (``$KIS_CACHE_DIR``, else ``~/.cache/kis-s``).
    """
    from controller.slo import SLO
    from simulator.cluster.build import resolve_pools
    from simulator.cluster.config import ClusterConfig, NodePool
    from simulator.planning.capacity import pool_capacity

    try:
        config = ClusterConfig(pools=(NodePool(name=gpu.lower(), gpu=gpu),), model=model, timing=timing, router=router,
                               max_num_seqs=max_num_seqs, max_batched_tokens=max_batched_tokens)
        pool = resolve_pools(config)[0]
        slo = SLO(slo_ttft_ms / 1000.0, slo_tpot_ms / 1000.0)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    with err_console.status(f"measuring {pool.pool.gpu} x {config.model} at the SLO ..."):
        profile = pool_capacity(pool, slo, attainment, label=f"{pool.pool.gpu} x {config.model} ({timing})", router=router)
    data = profile.to_dict()
    if as_json:
        print_json(data)
    else:
        console.print(_summary(profile))
        console.print(f"[dim]{profile.source}[/dim]")
        typer.echo(_yaml(data))
    if out is not None:
        out.write_text(_yaml(data))


def _yaml(data: dict) -> str:
    """The ``capacity:`` block, tables to four significant digits (the measurement is no more precise)."""
    def rounded(rows: list) -> list:
        return [[float(f"{v:.4g}") for v in row] for row in rows]

    block = {k: rounded(v) if k in ("maxRps", "maxConcurrency", "pooledRps") else v for k, v in data.items()}
    return yaml.safe_dump({"capacity": block}, sort_keys=False, default_flow_style=None, width=120)


def _summary(profile) -> Table:
    table = Table(title="requests/s one replica serves at the SLO")
    table.add_column("prompt \\ output", justify="right")
    for o in profile.output_tokens:
        table.add_column(f"{o:g}", justify="right")
    for i, p in enumerate(profile.prompt_tokens):
        table.add_row(f"{p:g}", *(f"{v:.3g}" for v in profile.max_rps[i]))
    return table
