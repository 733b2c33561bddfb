"""Options and helpers shared by the ``kis`` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.workloads.workload import Workload

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error line is never broken: paths stay whole


def print_error(problem: object) -> None:
    """``error: <problem>`` on stderr, the problem's text printed as is (no markup, no emoji codes:
    ``file:a:`` would print an emoji)."""
    err_console.print("[red]error:[/red]", escape(str(problem)), emoji=False)


def load_workload(
    preset: str | None,
    trace: Path | None,
    fmt: str,
    *,
    seed: int,
    duration_s: float | None,
    rate_scale: float = 1.0,
    skip_bad_rows: bool = False,
) -> Workload:
    """A workload from a preset name or a trace file; errors exit with a message."""
    from simulator.workloads.catalog import load_trace, make_workload

    try:
        if trace is not None:
            workload = load_trace(trace, fmt, skip_bad_rows=skip_bad_rows, seed=seed)
            if duration_s is not None:
                from simulator.workloads.ops import window

                workload = window(workload, 0.0, duration_s)
        else:
            workload = make_workload(preset or "llm-day", seed=seed, duration_s=duration_s)
        if rate_scale != 1.0:
            import numpy as np

            from simulator.workloads.ops import scale_rate

            workload = scale_rate(workload, rate_scale, np.random.default_rng(seed))
    except (ValueError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    return workload


SHORT = {"slo_attainment": "SLO", "ttft_p95_s": "TTFT p95", "tpot_p95_s": "TPOT p95", "e2e_p95_s": "E2E p95", "gpu_hours": "GPU-h",
         "cost_usd": "cost", "scale_events": "scales", "reaction_time_s": "react", "requests": "requests"}


def fmt_value(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key.endswith("_s"):
        return f"{value:.1f} s" if value >= 10 else f"{value * 1000:.0f} ms"
    if key == "slo_attainment":
        return f"{value:.2%}"
    if key == "cost_usd":
        return f"${value:.2f}"
    if key in ("requests", "rejected", "unserved"):
        return f"{value:.0f}"
    if key == "scale_events":
        return f"{value:.1f}"
    return f"{value:.2f}"


def vertical_table(title: str, summary: dict[str, float], keys: list[str]) -> Table:
    """One run: a metric per row."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        table.add_row(key.replace("_s", "").replace("_", " "), fmt_value(key, summary.get(key, math.nan)))
    return table


def summary_table(title: str, rows: dict[str, dict[str, float]], keys: list[str]) -> Table:
    """A table with one row per run and one column per summary key."""
    table = Table(title=title)
    table.add_column("run", no_wrap=True)
    for key in keys:
        table.add_column(SHORT.get(key, key.replace("_", " ")), justify="right", no_wrap=True)
    for name, summary in rows.items():
        table.add_row(name, *(fmt_value(k, summary.get(k, math.nan)) for k in keys))
    return table


def print_json(data: Any) -> None:
    """Machine-readable output: JSON on stdout, NaN as null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    typer.echo(json.dumps(clean(data), indent=2, sort_keys=True))
