"""``kis workload`` commands: trace statistics and synthetic generation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from simulator.cli.common import console, err_console, print_error, print_json

app = typer.Typer(help="Inspect traces and generate workloads.", no_args_is_help=True)


@app.command("stats")
def stats_command(
    file: Path = typer.Argument(..., help="Trace file (CSV or JSONL)."),
    fmt: str = typer.Option("azure", "--format", help="azure, burstgpt, mooncake, or generic:time=..,prompt=..,output=..[,unit=s|ms|us|datetime]."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Drop malformed rows (and report how many) instead of failing."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rows, span, token percentiles, mean and peak request rate of a trace."""
    from simulator.workloads.stats import workload_stats
    from simulator.workloads.traces import WorkloadError, read_trace

    try:
        result = read_trace(file, fmt, skip_bad_rows=skip_bad_rows)
    except WorkloadError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    stats = workload_stats(result.workload) | {"skipped_rows": float(result.skipped)}
    if as_json:
        print_json(stats | {"skipped_examples": result.problems})
        return
    table = Table(title=f"{file.name} ({fmt})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(key.replace("_", " "), f"{value:,.3f}" if value != int(value) else f"{int(value):,}")
    console.print(table)
    for problem in result.problems:
        err_console.print(f"[yellow]skipped:[/yellow] {problem}")


@app.command("generate")
def generate_command(
    preset: str = typer.Argument(..., help="ramp, periodic, random, spike or llm-day."),
    seed: int = typer.Option(0, "--seed"),
    duration: float | None = typer.Option(None, "--duration", help="Seconds (preset default: 3600)."),
    out: Path = typer.Option(Path("out/workload_per_minute.csv"), "--out", help="Per-minute aggregates CSV."),
    requests_out: Path | None = typer.Option(None, "--requests-out", help="Also write the raw requests (generic CSV: time=arrival_s,prompt=prompt_tokens,output=output_tokens)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Generate a seeded workload and export its per-minute requests and tokens."""
    from simulator.workloads.catalog import make_workload
    from simulator.workloads.ops import write_per_minute_csv, write_requests_csv
    from simulator.workloads.stats import workload_stats

    try:
        workload = make_workload(preset, seed=seed, duration_s=duration)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    write_per_minute_csv(workload, out)
    if requests_out:
        write_requests_csv(workload, requests_out)
    stats = workload_stats(workload)
    if as_json:
        print_json(stats | {"per_minute_csv": str(out)})
    else:
        console.print(f"{preset} (seed {seed}): {len(workload):,} requests over {workload.duration_s:,.0f} s, "
                      f"mean {stats['mean_rate_rps']:.2f} req/s, peak minute {stats['peak_rate_rps']:.2f} req/s -> {out}")
