"""``kis simulate``: a workload on a simulated GPU cluster, fixed or autoscaled."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from controller.slo import SLO
from simulator.cli.common import console, err_console, load_workload, print_error, print_json, vertical_table

SUMMARY_KEYS = [
    "requests", "slo_attainment", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "tpot_p50_s", "tpot_p95_s", "tpot_p99_s",
    "e2e_p50_s", "e2e_p95_s", "e2e_p99_s", "gpu_utilization_pct", "gpu_hours", "cost_usd", "scale_events",
]


def simulate_command(
    workload: str = typer.Option("llm-day", "--workload", "-w", help="Workload preset (ramp, periodic, random, spike, llm-day)."),
    trace: Path | None = typer.Option(None, "--trace", help="Replay a trace file instead of a preset."),
    fmt: str = typer.Option("azure", "--format", help="Trace format: azure, burstgpt, mooncake, per-minute, generic:time=..,prompt=..,output=.."),
    duration: float | None = typer.Option(None, "--duration", help="Seconds of workload (preset default, or the whole trace)."),
    rate_scale: float = typer.Option(1.0, "--rate-scale", help="Multiply the request rate."),
    seed: int = typer.Option(0, "--seed", help="Seed for the workload and the cluster."),
    replicas: int = typer.Option(4, "--replicas", "-r", help="Replicas (Ready at the start)."),
    cluster: Path | None = typer.Option(None, "--cluster", help="Cluster YAML (e.g. from kis calibrate); the options below override it."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU type of the node pool [H100]."),
    model: str | None = typer.Option(None, "--model", help="Model shape name or shape/profile JSON [llama-8b]."),
    engine: str | None = typer.Option(None, "--engine", help="paged (vLLM: paged attention, CUDA graphs) or eager (Hugging Face) [paged]."),
    calibration: list[Path] = typer.Option([], "--calibration", help="A calibration JSON, or measured profile(s) to calibrate on (repeatable)."),
    timing: str | None = typer.Option(None, "--timing", help="kernel (GPU time) or wall (with eager host launch time) [kernel]."),
    router: str | None = typer.Option(None, "--router", help="round_robin, least_connections, least_loaded, random [least_connections]."),
    gpus_per_node: int | None = typer.Option(None, "--gpus-per-node", help="[8]"),
    max_nodes: int | None = typer.Option(None, "--max-nodes", help="Most nodes the pool may grow to [2]."),
    provisioning_delay: float | None = typer.Option(None, "--provisioning-delay", help="Seconds to add a node [180]."),
    autoscale: bool = typer.Option(False, "--autoscale", help="Run the control loop with --policy instead of fixed replicas."),
    policy: str = typer.Option('{"type": "fixed", "replicas": 4}', "--policy", help="Policy as JSON (see `kis evaluate --help`)."),
    min_replicas: int = typer.Option(1, "--min-replicas"),
    max_replicas: int = typer.Option(16, "--max-replicas"),
    interval: float = typer.Option(15.0, "--interval", help="Control interval, seconds."),
    slo_ttft_ms: float = typer.Option(500.0, "--slo-ttft-ms"),
    slo_tpot_ms: float = typer.Option(50.0, "--slo-tpot-ms"),
    out: Path = typer.Option(Path("out/simulate"), "--out", help="Folder for plots and the summary JSON."),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Simulate a workload on a GPU cluster: SLO attainment, latency percentiles, GPU-hours, cost, plots."""
    from simulator.cluster.build import resolve_pools
    from simulator.cluster.file import ClusterSection, load_cluster_file, override_section
    from simulator.runner import simulate

    slo = SLO(slo_ttft_ms / 1000.0, slo_tpot_ms / 1000.0)
    wl = load_workload(workload, trace, fmt, seed=seed, duration_s=duration, rate_scale=rate_scale)
    try:
        base = load_cluster_file(cluster) if cluster is not None else ClusterSection()
        flags = {"gpu": gpu, "model": model, "engine": engine, "timing": timing, "router": router, "gpus_per_node": gpus_per_node,
                 "max_nodes": max_nodes, "provisioning_delay_s": provisioning_delay, "calibration": tuple(str(c) for c in calibration) or None}
        section = override_section(base, flags)
        nodes = max(1, -(-replicas // section.gpus_per_node))
        config = section.build(initial_nodes=nodes, max_nodes=max(section.max_nodes, nodes))
        resolve_pools(config)  # an unreadable calibration or unknown GPU fails here, with one line
        decide = _decider(policy, min_replicas, max_replicas, slo, interval) if autoscale else None
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    with Progress(TextColumn("[bold]simulating {task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=err_console, disable=as_json, transient=True) as progress:
        task = progress.add_task(wl.name, total=wl.duration_s)
        result = simulate(wl, config, replicas=replicas, decide=decide, interval_s=interval, slo=slo, seed=seed,
                          on_tick=lambda t: progress.update(task, completed=t))
    summary = result.summary()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    paths = []
    if plots:
        from simulator.plots import plot_run

        paths = plot_run(result, out, arrivals=wl.arrival_s)
    if as_json:
        print_json(summary)
        return
    console.print(vertical_table(f"{wl.name} on {section.gpu} x {section.model} ({section.engine})", summary, SUMMARY_KEYS))
    for path in paths:
        console.print(f"plot: {path}")


def _decider(policy_json: str, min_replicas: int, max_replicas: int, slo: SLO, interval_s: float):
    """A stateful closure over the controller's decision step."""
    from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, make_decider

    try:
        spec = json.loads(policy_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--policy is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise ValueError(f"--policy must be a JSON object with a 'type', got {policy_json!r}")
    setup = EvaluationSetup(slo=slo, interval_s=interval_s, min_replicas=min_replicas, max_replicas=max_replicas)
    return make_decider(PolicyEntry(str(spec.get("type")), spec), setup)
