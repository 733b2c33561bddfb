"""``kis twin``: the local closed loop (emulated Kubernetes, stub replicas, Prometheus, controller, load); ``kis twin soak``: faults."""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.cli.common import console, err_console, print_error

app = typer.Typer(help="The whole autoscaling loop on this machine.", invoke_without_command=True)


@app.callback(invoke_without_command=True)
def twin_command(
    ctx: typer.Context,
    duration: float = typer.Option(60.0, "--duration", help="Seconds of load."),
    base_rate: float = typer.Option(3.0, "--base-rate", help="Requests/s outside the spike."),
    peak_rate: float = typer.Option(24.0, "--peak-rate", help="Requests/s during the spike."),
    spike_start: float = typer.Option(10.0, "--spike-start"),
    spike_length: float = typer.Option(20.0, "--spike-length"),
    drain: float = typer.Option(40.0, "--drain", help="Seconds to keep running after the load, to see the scale-down."),
    max_replicas: int = typer.Option(6, "--max-replicas"),
    startup_delay: float = typer.Option(3.0, "--startup-delay", help="Model load of a new replica, seconds."),
    out: Path = typer.Option(Path("out/twin"), "--out"),
    pipeline: str = typer.Option("", "--pipeline", help="A pipeline (built-in rag, speech, disagg, or a YAML file): one stub Deployment "
                                 "per stage, requests pass through them in order, one InferencePipelineAutoscaler scales them jointly."),
    budget: int = typer.Option(0, "--budget", help="With --pipeline: the GPUs the stages share (0: no budget)."),
) -> None:
    """Run the whole autoscaling loop on this machine: a load spike makes the controller scale the stub replicas up and back down."""
    if ctx.invoked_subcommand is not None:
        return
    if pipeline:
        _pipeline_twin(pipeline, budget, max_replicas, startup_delay, drain, spike_args=(duration, base_rate, peak_rate, spike_start, spike_length))
        return
    from rich.live import Live
    from rich.table import Table

    from simulator.twin.report import write_twin_report
    from simulator.twin.run import TwinConfig, run_twin, spike

    state = {"t": 0.0, "desired": 0, "ready": 0, "inflight": 0}

    def table() -> Table:
        view = Table(title="kis twin")
        for column in ("t (s)", "desired", "ready", "in flight"):
            view.add_column(column, justify="right")
        view.add_row(f"{state['t']:.0f}", str(state["desired"]), str(state["ready"]), str(state["inflight"]))
        return view

    try:
        with Live(table(), console=err_console, refresh_per_second=2) as live:
            def on_sample(t: float, desired: int, ready: int, inflight: int) -> None:
                state.update(t=t, desired=desired, ready=ready, inflight=inflight)
                live.update(table())

            result = run_twin(spike(duration, base_rate, peak_rate, spike_start, spike_length),
                              TwinConfig(max_replicas=max_replicas, startup_delay_s=startup_delay, drain_s=drain), on_sample=on_sample)
    except RuntimeError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    report = write_twin_report(result, out)
    console.print(report.read_text().split("![twin]")[0])
    console.print(f"report: {report}")


def _pipeline_twin(name: str, budget: int, max_replicas: int, startup_delay: float, drain: float, spike_args: tuple) -> None:
    """``kis twin --pipeline``: the pipeline's closed loop, then a table per stage."""
    from rich.table import Table

    from simulator.pipeline.spec import PipelineSpecError, resolve_pipeline
    from simulator.twin.pipeline import TwinPipelineConfig, run_twin_pipeline, stages_of
    from simulator.twin.run import spike

    try:
        spec = resolve_pipeline(name)
        config = TwinPipelineConfig(stages_of(spec, max_replicas), name=spec.name, max_gpus=budget or None, startup_delay_s=startup_delay,
                                    drain_s=drain)
        err_console.print(f"[dim]pipeline {spec.name}: {', '.join(s.name for s in config.stages)}; running the closed loop...[/dim]")
        result = run_twin_pipeline(spike(*spike_args), config)
    except (PipelineSpecError, RuntimeError) as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    table = Table(title=f"kis twin --pipeline {spec.name}" + (f" (budget {budget} GPUs)" if budget else ""))
    for column in ("stage", "max desired", "max ready", "final desired", "budget cuts"):
        table.add_column(column, justify="right")
    for stage, points in result.timeline.items():
        cuts = sum(1 for _, s, text in result.decisions if s == stage and "BudgetLimit" in text)
        table.add_row(stage, str(max(d for _, d, _ in points)), str(max(r for _, _, r in points)), str(points[-1][1]), str(cuts))
    console.print(table)
    lost = sum(1 for r in result.requests if not r.ok)
    console.print(f"requests: {len(result.requests)}, failed: {lost}")
    if lost:
        raise typer.Exit(1)


@app.command("soak")
def soak_command(
    duration: float = typer.Option(60.0, "--duration", min=40.0, help="Seconds of load (the faults are timed for 60)."),
    out: Path = typer.Option(Path("out/soak"), "--out"),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fault soak: two controller replicas scale the stub while Prometheus, the API server, the leader and the policy break."""
    import json

    from rich.table import Table

    from simulator.twin.soak import SoakConfig, run_soak, write_soak_report

    def event(t: float, what: str) -> None:
        err_console.print(f"[dim]{t:6.1f} s[/dim]  {what}")

    try:
        result = run_soak(SoakConfig(duration_s=duration), on_event=event)
    except RuntimeError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    report = write_soak_report(result, out)
    summary = result.summary()
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        table = Table(title="kis twin soak")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for name, value in summary.items():
            if isinstance(value, dict):
                for kind, n in value.items():
                    table.add_row(f"wrong: {kind.replace('_', ' ')}", str(n))
            else:
                table.add_row(name.replace("_", " "), str(value))
        console.print(table)
        console.print(f"report: {report}")
    if result.wrong_count or result.lost:
        raise typer.Exit(1)
