"""``kis evaluate`` and ``kis demo``: policies side by side on the same cluster and SLO."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from controller.slo import SLO
from simulator.cli.common import console, err_console, print_error, print_json, summary_table

#: The terminal table: what fits 80 columns (the report on disk has every metric).
TABLE_KEYS = ["slo_attainment", "ttft_p95_s", "tpot_p95_s", "gpu_hours", "cost_usd", "scale_events"]


def _progress(disable: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, disable=disable, transient=True)


def run_evaluation(
    *, policies_file: Path | None, workloads: list[str], traces: list[Path], fmt: str, seeds: list[int],
    duration: float | None, do_sweep: bool, oracle: bool, out: Path, as_json: bool, slo: SLO, max_replicas: int,
    interval: float, training_runs: list[Path], title: str, gpu: str, model: str, rate_scale: float = 1.0,
    skip_bad_rows: bool = False, cluster_file: Path | None = None, workers: int | None = 1, ray: str | None = None,
) -> dict:
    from simulator.cluster.config import ClusterConfig, NodePool
    from simulator.evaluation.presets import DEFAULT_POLICIES, load_policies, preset_workloads, trace_workload
    from simulator.evaluation.report import overall, write_report
    from simulator.evaluation.runner import EvaluationSetup, aggregate, evaluate
    from simulator.evaluation.sweep import sweep, sweep_size
    from simulator.executor import make_executor

    try:
        policies = load_policies(policies_file) if policies_file else list(DEFAULT_POLICIES)
        entries = preset_workloads(workloads, duration, rate_scale) + [
            trace_workload(t, fmt, duration, rate_scale=rate_scale, skip_bad_rows=skip_bad_rows) for t in traces]
    except (ValueError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    if not entries:
        err_console.print("[red]error:[/red] no workloads: give --workloads and/or --trace")
        raise typer.Exit(2)
    if cluster_file is not None:  # a cluster YAML (kis calibrate) replaces --gpu and --model
        from simulator.cluster.file import load_cluster_file

        try:
            section = load_cluster_file(cluster_file)
        except ValueError as exc:
            print_error(exc)
            raise typer.Exit(2) from exc
        cluster = section.build(max_nodes=max(1, -(-max_replicas // section.gpus_per_node)))
        gpu, model = section.gpu, section.model
    else:
        cluster = ClusterConfig(pools=(NodePool(name=gpu.lower(), gpu=gpu, gpus_per_node=8, initial_nodes=1, max_nodes=max(1, -(-max_replicas // 8))),), model=model)
    setup = EvaluationSetup(cluster=cluster, slo=slo, interval_s=interval, max_replicas=max_replicas)
    started = time.perf_counter()
    runs = len(entries) * len(seeds) * (len(policies) + int(oracle))
    failures: list = []
    try:
        executor = make_executor(workers, ray)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    try:
        with executor, _progress(as_json) as bar:
            if not as_json:
                err_console.print(f"{runs} runs on {_executor_text(executor)}")
            task = bar.add_task("evaluating", total=runs)
            records = evaluate(policies, entries, seeds, setup, include_oracle=oracle, executor=executor, failures=failures,
                               on_run=lambda p, w, s: bar.update(task, advance=1, description=f"{p} on {w} (seed {s})"))
            points = []
            if do_sweep:
                task = bar.add_task("sweeping", total=sweep_size(policies, len(entries), len(seeds)))
                points = sweep(policies, entries, seeds, setup, executor=executor, failures=failures,
                               on_run=lambda p, w, s: bar.update(task, advance=1, description=f"sweep {p} on {w} (seed {s})"))
    except (RuntimeError, ValueError) as exc:  # Ray missing or unreachable, cells that cannot be sent to workers
        print_error(exc)
        raise typer.Exit(2) from exc
    for failure in failures:
        print_error(f"run failed: {failure}")
    report = write_report(records, out, title=title, sweep=points, training_runs=training_runs,
                          notes=f"Cluster: {gpu} x {model}, SLO TTFT {slo.ttft_s * 1000:.0f} ms / TPOT {slo.tpot_s * 1000:.0f} ms, "
                                f"control interval {interval:g} s, replicas 1..{max_replicas}. Oracle: clairvoyant, see simulator/evaluation/oracle.py.")
    result = {
        "overall": overall(records),
        "per_workload": {f"{p}/{w}": v for (p, w), v in aggregate(records).items()},
        "sweep": [p.__dict__ for p in points],
        "report": str(report),
        "seconds": round(time.perf_counter() - started, 1),
        "failed": [{"policy": f.policy, "workload": f.workload, "seed": f.seed, "error": f.error} for f in failures],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    if as_json:
        print_json(result)
    else:
        console.print(summary_table(f"{title} (mean over workloads and seeds)", result["overall"], TABLE_KEYS))
        console.print(f"report: {report}")
    if failures:
        raise typer.Exit(1)
    return result


def _executor_text(executor) -> str:
    if executor.name == "ray":
        return f"ray, {executor.workers} CPUs"
    return "serial" if executor.name == "serial" else f"{executor.workers} processes"


def _csv(value: str, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


def evaluate_command(
    policies: Path | None = typer.Option(None, "--policies", help="YAML list of {name, spec, behavior}; default: learned, hpa, threshold, kpa, fixed."),
    workloads: str = typer.Option("ramp,periodic,random,spike,llm-day", "--workloads", help="Comma-separated presets ('' for none)."),
    trace: list[Path] = typer.Option([], "--trace", help="Trace file(s) to evaluate on (repeatable)."),
    fmt: str = typer.Option("azure", "--format", help="Trace format preset."),
    seeds: str = typer.Option("0,1,2,3,4", "--seeds", help="Comma-separated seeds."),
    duration: float | None = typer.Option(None, "--duration", help="Seconds of each workload (default: preset length / whole trace)."),
    do_sweep: bool = typer.Option(False, "--sweep", help="Also sweep each policy's main knob (cost-vs-attainment fronts)."),
    oracle: bool = typer.Option(True, "--oracle/--no-oracle", help="Include the clairvoyant oracle."),
    rate_scale: float = typer.Option(1.0, "--rate-scale", min=1e-3, help="Multiply every workload's request rate (thinning or copies)."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip malformed trace rows (counted) instead of refusing the file."),
    max_replicas: int = typer.Option(8, "--max-replicas", min=1),
    interval: float = typer.Option(15.0, "--interval"),
    gpu: str = typer.Option("H100", "--gpu"),
    model: str = typer.Option("llama-8b", "--model"),
    cluster: Path | None = typer.Option(None, "--cluster", help="Cluster YAML (e.g. from kis calibrate) instead of --gpu and --model."),
    slo_ttft_ms: float = typer.Option(500.0, "--slo-ttft-ms"),
    slo_tpot_ms: float = typer.Option(50.0, "--slo-tpot-ms"),
    training_run: list[Path] = typer.Option([], "--training-run", help="kis train output folder(s) to plot training curves from."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core; 1 runs in this process)."),
    ray: str | None = typer.Option(None, "--ray", help="Run on Ray: 'auto' (local instance) or ray://HOST:10001 (a cluster)."),
    out: Path = typer.Option(Path("out/eval"), "--out"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Policies x workloads x seeds on the same cluster and SLO, with a clairvoyant oracle; table, report, plots."""
    run_evaluation(policies_file=policies, workloads=_csv(workloads), traces=trace, fmt=fmt, seeds=_csv(seeds, int), duration=duration,
                   do_sweep=do_sweep, oracle=oracle, out=out, as_json=as_json, slo=SLO(slo_ttft_ms / 1000, slo_tpot_ms / 1000),
                   max_replicas=max_replicas, interval=interval, training_runs=training_run, title="KIS-S policy evaluation", gpu=gpu, model=model,
                   rate_scale=rate_scale, skip_bad_rows=skip_bad_rows, cluster_file=cluster, workers=workers, ray=ray)


def demo_command(
    seeds: str = typer.Option("0,1", "--seeds", help="Comma-separated seeds."),
    duration: float = typer.Option(1800.0, "--duration", help="Seconds of each workload."),
    rate_scale: float = typer.Option(1.0, "--rate-scale", min=1e-3, help="Multiply every workload's request rate."),
    trace: list[Path] = typer.Option([], "--trace", help="Also evaluate on these trace files (repeatable)."),
    fmt: str = typer.Option("azure", "--format", help="Trace format preset."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip malformed trace rows instead of refusing the file."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes (default: one per core; 1 runs in this process)."),
    ray: str | None = typer.Option(None, "--ray", help="Run on Ray: 'auto' (local instance) or ray://HOST:10001 (a cluster)."),
    out: Path = typer.Option(Path("out/demo"), "--out"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The main job: the shipped learned policy against the planner, hpa, kpa, threshold, a fixed fleet and
    the clairvoyant oracle on the four patterns and a synthetic LLM day; a table here and a report on disk."""
    run_evaluation(policies_file=None, workloads=["ramp", "periodic", "random", "spike", "llm-day"], traces=trace, fmt=fmt,
                   seeds=_csv(seeds, int), duration=duration, do_sweep=False, oracle=True, out=out, as_json=as_json, slo=SLO(),
                   max_replicas=8, interval=15.0, training_runs=[], title="KIS-S demo", gpu="H100", model="llama-8b",
                   rate_scale=rate_scale, skip_bad_rows=skip_bad_rows, workers=workers, ray=ray)
