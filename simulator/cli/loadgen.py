"""``kis loadgen``: replay a workload or trace against an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from controller.slo import SLO
from simulator.cli.common import console, err_console, load_workload, print_error, print_json, vertical_table

app = typer.Typer(help="Replay a workload against an OpenAI-compatible endpoint.", no_args_is_help=True)


@app.command("run")
def run_command(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Base URL of the server (the stub or a real vLLM)."),
    model: str = typer.Option("kis-stub", "--model", help="Model id to ask for."),
    workload: str = typer.Option("spike", "--workload", "-w", help="Workload preset."),
    trace: Path | None = typer.Option(None, "--trace", help="Replay a trace file instead."),
    fmt: str = typer.Option("azure", "--format"),
    duration: float | None = typer.Option(300.0, "--duration", help="Seconds of workload."),
    rate_scale: float = typer.Option(1.0, "--rate-scale"),
    seed: int = typer.Option(0, "--seed"),
    speedup: float = typer.Option(1.0, "--speedup", help="Time compression: send N times faster than the workload's clock."),
    max_requests: int | None = typer.Option(None, "--max-requests", help="Stop after this many requests."),
    concurrency_limit: int = typer.Option(256, "--concurrency-limit", help="Most requests in flight (safety cap)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Per-request timeout, seconds."),
    keepalive: bool = typer.Option(True, "--keepalive/--no-keepalive",
                                   help="Reuse connections; --no-keepalive opens one per request (spreads over a Service's replicas)."),
    slo_ttft_ms: float = typer.Option(500.0, "--slo-ttft-ms"),
    slo_tpot_ms: float = typer.Option(50.0, "--slo-tpot-ms"),
    out: Path = typer.Option(Path("out/loadgen.csv"), "--out", help="Per-request results CSV."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Open-loop replay with streaming: per-request TTFT, TPOT and end-to-end latency, a CSV and a summary."""
    from simulator.loadgen.replay import replay, summarize_results, write_results_csv

    wl = load_workload(workload, trace, fmt, seed=seed, duration_s=duration, rate_scale=rate_scale)
    total = len(wl) if max_requests is None else min(max_requests, len(wl))
    with Progress(TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, disable=as_json, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        try:
            results = asyncio.run(replay(url, wl, model=model, speedup=speedup, max_requests=max_requests, concurrency_limit=concurrency_limit,
                                         timeout_s=timeout, on_result=lambda r: bar.update(task, advance=1), keepalive=keepalive))
        except ValueError as exc:
            print_error(exc)
            raise typer.Exit(2) from exc
    write_results_csv(results, out)
    summary = summarize_results(results, SLO(slo_ttft_ms / 1000, slo_tpot_ms / 1000))
    if as_json:
        print_json(summary | {"csv": str(out)})
        return
    keys = ["requests", "slo_attainment", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "tpot_p50_s", "tpot_p95_s", "tpot_p99_s", "e2e_p50_s", "e2e_p95_s", "e2e_p99_s"]
    console.print(vertical_table(f"{wl.name} -> {url}", {k: v for k, v in summary.items() if k != "errors"}, keys))  # type: ignore[misc]
    console.print(f"errors: {summary['errors'] or 'none'}; results: {out}")
