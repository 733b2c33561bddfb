"""``kis calibrate``: fit the simulator to a deployment's own Prometheus history."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from simulator.cli.common import console, err_console, print_error, print_json


def calibrate_command(
    prometheus_url: str = typer.Option(..., "--prometheus-url", help="Prometheus that scrapes the vLLM pods and kube-state-metrics."),
    namespace: str = typer.Option(..., "--namespace", help="Namespace of the Deployment."),
    deployment: str = typer.Option(..., "--deployment", help="The Deployment serving the model (label 'deployment' on vLLM series)."),
    since: str = typer.Option("6h", "--since", help="History to read, back from --until (Prometheus duration: 90s, 30m, 6h, 1d)."),
    until: float | None = typer.Option(None, "--until", help="End of the history, unix seconds [now]."),
    step: str = typer.Option("60s", "--step", help="Window of one fitted observation per pod."),
    workload_bin: str = typer.Option("60s", "--workload-bin", help="Bin of the exported traffic."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU of the pods [from DCGM's modelName label, else H100]."),
    model: str = typer.Option("llama-8b", "--model", help="Model shape served (built-in name or shape JSON)."),
    engine: str = typer.Option("paged", "--engine", help="Engine mode the pods run (paged: vLLM)."),
    max_batched_tokens: int = typer.Option(2048, "--max-batched-tokens", min=2, help="The server's max_num_batched_tokens (prefill chunk)."),
    calibration: list[Path] = typer.Option([], "--calibration", help="Calibration to start from (default: the shipped one)."),
    held_out: float = typer.Option(0.25, "--held-out", help="Share of the window, at its end, kept out of the fit to measure its error."),
    deployment_label: str = typer.Option("deployment", "--deployment-label", help="Label that names the Deployment on vLLM series."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per Prometheus query."),
    out: Path = typer.Option(Path("out/calibrate"), "--out", help="Folder for calibration.json, cluster.yaml, workload.csv, report.json."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fit the engine efficiency and the pod start-up to a deployment's Prometheus history; export its traffic.

    Writes a calibration and a cluster file that kis simulate, kis train and kis evaluate accept (--cluster), and the observed traffic per bin (kis simulate --trace workload.csv --format per-minute).
    """
    from simulator.calibration.history import parse_duration
    from simulator.calibration.run import CalibrateRequest, calibrate_cluster

    try:
        end = until if until is not None else time.time()
        request = CalibrateRequest(prometheus_url, namespace, deployment, end - parse_duration(since, "--since"), end,
                                   step_s=parse_duration(step, "--step"), workload_bin_s=parse_duration(workload_bin, "--workload-bin"), gpu=gpu,
                                   model=model, engine=engine, max_batched_tokens=max_batched_tokens, base_calibration=tuple(str(c) for c in calibration),
                                   held_out_fraction=held_out, deployment_label=deployment_label, timeout_s=timeout)
        with err_console.status(f"reading {namespace}/{deployment} from {prometheus_url}", spinner="dots") if not as_json else _nothing():
            result = calibrate_cluster(request, out)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    report = result.report()
    if as_json:
        print_json(report)
        return
    fit = report["engine_fit"]
    table = Table(title=f"{namespace}/{deployment}: engine fit ({result.gpu}, {model}, {engine})")
    table.add_column("", no_wrap=True)
    table.add_column("fitted", justify="right")
    table.add_column("held out", justify="right")
    table.add_row("windows", str(fit["fit_windows"]), str(fit["held_out_windows"]))
    for key, label in (("itl", "inter-token latency MAPE"), ("prefill", "prefill time MAPE")):
        table.add_row(label, f"{fit['fit_error'][key]:.1%}", f"{fit['held_out_error'][key]:.1%}" if fit["held_out_error"] else "-")
    console.print(table)
    params = fit["params"]
    console.print(f"efficiency scales: compute {fit['compute_scale']:.3f}, memory {fit['memory_scale']:.3f} -> compute_eff "
                  f"{params['compute_eff']:.3f}, memory_eff {params['memory_eff']:.3f}, attention_memory_eff {params['attention_memory_eff']:.3f}")
    startup = report["startup"]
    if startup["pods"]:
        console.print(f"start-up: {startup['pods']} pod(s), {startup['warm']} warm, {startup['fresh']} on new nodes; mean "
                      f"{startup['startup_mean_s']:.1f} s, p90 {startup['startup_p90_s']:.1f} s -> {startup['lifecycle']}")
    else:
        console.print("start-up: no pod with created, scheduled and ready times (kube-state-metrics); defaults kept")
    traffic = report["workload"]
    console.print(f"traffic: {traffic['bins']} bin(s), {traffic['requests']:.0f} requests, {traffic['mean_rate_rps']:.2f} req/s, "
                  f"mean {traffic['mean_prompt_tokens']:.0f} prompt / {traffic['mean_output_tokens']:.0f} output tokens")
    for name, path in report["files"].items():
        console.print(f"{name}: {path}")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
