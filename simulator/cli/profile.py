"""``kis profile``: GPU profiles and the engine latency model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from simulator.cli.common import console, print_error, print_json

app = typer.Typer(help="GPU profiles and the engine latency model.", no_args_is_help=True)


def _fail(exc: Exception) -> None:
    print_error(exc)
    raise typer.Exit(2) from exc


@app.command("predict")
def predict_command(
    gpu: str = typer.Option("H100", "--gpu", help="GPU name (H100, H200, A100, L40S, L4, A10)."),
    model: str = typer.Option("llama-8b", "--model", help="Built-in shape name, shape JSON, or profile JSON (its shape)."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Calibrate on this measured profile first (default: shipped parameters)."),
    phase: str = typer.Option("decode", "--phase", help="prefill or decode."),
    batch: int = typer.Option(1, "--batch", min=1),
    tokens: int = typer.Option(1024, "--tokens", min=1, help="Prompt length (prefill) or cached context (decode)."),
    timing: str = typer.Option("kernel", "--timing", help="kernel (CUDA-graph server) or wall (eager)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Predicted time of one engine iteration, in milliseconds."""
    from simulator.profiles import default_calibration, get_gpu, load_shape
    from simulator.profiles.calibrate import calibrate_profile
    from simulator.profiles.measured import load_profile
    from simulator.profiles.roofline import SpecLatencyModel

    if phase not in ("prefill", "decode"):
        _fail(ValueError(f"--phase must be prefill or decode, got {phase!r}"))
    try:
        spec, shape = get_gpu(gpu), load_shape(model)
        params = calibrate_profile(load_profile(calibration), get_gpu("H100"), timing=f"{timing}_ms") if calibration else default_calibration(timing)
        latency = SpecLatencyModel(spec, shape, params)
    except ValueError as exc:
        _fail(exc)
    ms = latency.prefill_ms(batch, tokens) if phase == "prefill" else latency.decode_ms(batch, tokens)
    result = {"gpu": spec.name, "model": shape.name, "phase": phase, "batch": batch, "tokens": tokens, "timing": timing, "iteration_ms": ms}
    if as_json:
        print_json(result)
    else:
        console.print(f"{phase} on {spec.name}, {shape.name}, batch {batch}, {tokens} tokens: [bold]{ms:.3f} ms[/bold] ({timing} timing)")


@app.command("check")
def check_command(
    calibration: Path = typer.Option(..., "--calibration", help="Measured profile to calibrate on."),
    against: Path = typer.Option(..., "--against", help="Measured profile to predict (its shape may differ)."),
    gpu: str = typer.Option("H100", "--gpu", help="GPU both profiles were measured on."),
    timing: str = typer.Option("kernel", "--timing", help="kernel or wall."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Calibrate on one profile, predict every point of another: MAPE per phase and the worst point."""
    from simulator.profiles import get_gpu
    from simulator.profiles.calibrate import calibrate_profile, error_report
    from simulator.profiles.measured import load_profile
    from simulator.profiles.roofline import SpecLatencyModel

    try:
        spec = get_gpu(gpu)
        source, target = load_profile(calibration), load_profile(against)
        params = calibrate_profile(source, spec, timing=f"{timing}_ms")
    except ValueError as exc:
        _fail(exc)
    report = error_report(SpecLatencyModel(spec, target.shape, params, gqa_expanded=True), target.points, f"{timing}_ms")
    worst, predicted, err = report.worst
    result = {
        "mape": report.mape,
        "worst": {"phase": worst.phase, "batch": worst.batch, "tokens": worst.tokens, "measured_ms": worst.ms(f"{timing}_ms"), "predicted_ms": predicted, "error": err},
        "points": [{"phase": p.phase, "batch": p.batch, "tokens": p.tokens, "measured_ms": p.ms(f"{timing}_ms"), "predicted_ms": pr, "error": e} for p, pr, e in report.rows],
    }
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{target.model}: predicted from {source.model} ({timing} timing)")
    for column in ("phase", "batch", "tokens", "measured ms", "predicted ms", "error"):
        table.add_column(column, justify="right")
    for p, pr, e in report.rows:
        table.add_row(p.phase, str(p.batch), str(p.tokens), f"{p.ms(f'{timing}_ms'):.2f}", f"{pr:.2f}", f"{e:+.1%}")
    console.print(table)
    console.print("MAPE: " + ", ".join(f"{k} {v:.1%}" for k, v in report.mape.items()) + f"; worst {worst.phase} b={worst.batch} L={worst.tokens}: {err:+.1%}")


@app.command("measure")
def measure_command(
    model: str = typer.Option("llama-1b", "--model", help="Shape name or JSON to build with random weights."),
    out: Path = typer.Option(..., "--out", help="Profile JSON to write (same format as ../shared/gpu-profiles)."),
    batches: str = typer.Option("1,4,16", "--batches", help="Prefill batches."),
    prompt_lens: str = typer.Option("128,512,2048,4096", "--prompt-lens"),
    decode_batches: str = typer.Option("1,8,32,64,128,256", "--decode-batches"),
    context_lens: str = typer.Option("512,2048", "--context-lens"),
) -> None:
    """Measure a profile on this machine's CUDA GPU (needs torch and transformers)."""
    from simulator.profiles.measure import MeasureGrid, measure_profile

    try:
        grid = MeasureGrid.parse(batches, prompt_lens, decode_batches, context_lens)
        path = measure_profile(model, grid, out)
    except (RuntimeError, ValueError) as exc:
        _fail(exc)
    console.print(f"profile written to {path}")
