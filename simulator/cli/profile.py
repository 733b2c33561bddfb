"""``kis profile``: GPU profiles and the engine latency model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from simulator.cli.common import console, print_error, print_json

app = typer.Typer(help="GPU profiles and the engine latency model.", no_args_is_help=True)

CALIBRATION_HELP = "A calibration JSON, or measured profile(s) to calibrate on jointly (repeatable; default: the shipped calibration)."
ENGINE_HELP = "Engine mode: paged (vLLM: paged attention, CUDA graphs), eager (Hugging Face, what the shared profiles measure), eager-repeat-kv."


def _fail(exc: Exception) -> None:
    print_error(exc)
    raise typer.Exit(2) from exc


def _timing(value: str) -> str:
    if value not in ("kernel", "wall"):
        _fail(ValueError(f"--timing must be kernel or wall, got {value!r}"))
    return value


def _point_json(point, predicted: float, error: float, timing: str) -> dict:
    return {"phase": point.phase, "batch": point.batch, "tokens": point.tokens, "measured_ms": point.ms(f"{timing}_ms"), "predicted_ms": predicted, "error": error}


@app.command("predict")
def predict_command(
    gpu: str = typer.Option("H100", "--gpu", help="GPU name (H100, H200, A100, L40S, L4, A10)."),
    model: str = typer.Option("llama-8b", "--model", help="Built-in shape name, shape JSON, or profile JSON (its shape)."),
    calibration: list[Path] = typer.Option([], "--calibration", help=CALIBRATION_HELP),
    engine: str = typer.Option("paged", "--engine", help=ENGINE_HELP),
    phase: str = typer.Option("decode", "--phase", help="prefill or decode."),
    batch: int = typer.Option(1, "--batch", min=1),
    tokens: int = typer.Option(1024, "--tokens", min=1, help="Prompt length (prefill) or cached context (decode)."),
    timing: str = typer.Option("kernel", "--timing", help="kernel (GPU time) or wall (with eager host launch time)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Predicted time of one engine iteration, in milliseconds, and its parts."""
    from simulator.profiles import get_gpu, load_calibration, load_shape
    from simulator.profiles.roofline import SpecLatencyModel

    if phase not in ("prefill", "decode"):
        _fail(ValueError(f"--phase must be prefill or decode, got {phase!r}"))
    try:
        latency = SpecLatencyModel(get_gpu(gpu), load_shape(model), load_calibration(calibration), engine=engine, timing=_timing(timing))
    except ValueError as exc:
        _fail(exc)
    if phase == "prefill":
        ms, terms = latency.prefill_ms(batch, tokens), latency.terms(batch * tokens, batch * tokens * (tokens + 1) / 2.0, 0, 0.0, batch)
    else:
        ms, terms = latency.decode_ms(batch, tokens), latency.terms(0, 0.0, batch, float(batch * tokens))
    result = {"gpu": latency.gpu.name, "model": latency.shape.name, "engine": latency.mode.name, "phase": phase, "batch": batch, "tokens": tokens,
              "timing": timing, "iteration_ms": ms, "terms_ms": terms}
    if as_json:
        print_json(result)
        return
    console.print(f"{phase} on {latency.gpu.name}, {latency.shape.name}, {latency.mode.name} engine, batch {batch}, {tokens} tokens, "
                  f"{timing} timing: [bold]{ms:.3f} ms[/bold]")
    for name, value in terms.items():
        if value:
            console.print(f"  {name.replace('_', ' '):<18} {value:9.3f} ms")


@app.command("fit")
def fit_command(
    profile: list[Path] = typer.Option(..., "--profile", help="Measured profile(s) to calibrate on jointly (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Calibration JSON to write (kis simulate --calibration reads it)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Calibrate the model's efficiencies jointly on measured profiles and write them."""
    from simulator.profiles.calibrate import calibrate
    from simulator.profiles.measured import load_profile

    try:
        params = calibrate([load_profile(p) for p in profile])
    except ValueError as exc:
        _fail(exc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(params.to_json() + "\n")
    if as_json:
        print_json({"out": str(out)} | {k: getattr(params, k) for k in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff",
                                                                         "kernel_us", "host_kernel_us", "engine", "fit")})
        return
    table = Table(title=f"{params.engine} calibration: MAPE on its points")
    table.add_column("profile", no_wrap=True)
    for column in ("timing", "prefill", "decode"):
        table.add_column(column, justify="right")
    for name, errors in params.fit["profiles"].items():
        for timing in ("kernel", "wall"):
            table.add_row(name, timing, *(f"{errors[timing].get(ph, float('nan')):.1%}" for ph in ("prefill", "decode")))
    console.print(table)
    console.print(f"written to {out}")
    console.print("fitted: " + ", ".join(f"{k}={getattr(params, k):.3g}" for k in ("compute_eff", "memory_eff", "attention_compute_eff",
                                                                                    "attention_memory_eff", "kernel_us", "host_kernel_us")))


@app.command("check")
def check_command(
    calibration: list[Path] = typer.Option(..., "--calibration", help=CALIBRATION_HELP),
    against: Path = typer.Option(..., "--against", help="Measured profile to predict (its shape, GPU and engine may differ)."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU the --against profile ran on (default: its 'gpu' field)."),
    timing: str = typer.Option("kernel", "--timing", help="kernel or wall."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Calibrate on some profiles (or load a calibration), predict every point of another: MAPE and the worst point per phase."""
    from dataclasses import replace

    from simulator.profiles import load_calibration
    from simulator.profiles.calibrate import error_report, model_for
    from simulator.profiles.measured import load_profile

    timing = _timing(timing)
    try:
        target = load_profile(against)
        if gpu:
            target = replace(target, gpu=gpu)
        params = load_calibration(calibration)
        report = error_report(model_for(target, params, timing), target.points, f"{timing}_ms")
    except ValueError as exc:
        _fail(exc)
    result = {
        "mape": report.mape,
        "worst": {phase: _point_json(p, pr, e, timing) for phase, (p, pr, e) in report.worst.items()},
        "points": [_point_json(p, pr, e, timing) for p, pr, e in report.rows],
        "calibration": params.source,
    }
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{target.name}: predicted ({timing} timing)")
    for column in ("phase", "batch", "tokens", "measured ms", "predicted ms", "error"):
        table.add_column(column, justify="right")
    for p, pr, e in report.rows:
        table.add_row(p.phase, str(p.batch), str(p.tokens), f"{p.ms(f'{timing}_ms'):.2f}", f"{pr:.2f}", f"{e:+.1%}")
    console.print(table)
    console.print(f"calibration: {params.source}")
    for phase, (p, _, e) in report.worst.items():
        console.print(f"{phase}: MAPE {report.mape[phase]:.1%}, worst b={p.batch} L={p.tokens} {e:+.1%}")


@app.command("measure")
def measure_command(
    model: str = typer.Option("llama-1b", "--model", help="Shape name or JSON to build with random weights."),
    out: Path = typer.Option(..., "--out", help="Profile JSON to write (same format as ../shared/gpu-profiles); one per engine."),
    engine: str = typer.Option("auto", "--engine", help="eager (Hugging Face), vllm, both, or auto (both when vllm is installed)."),
    batches: str = typer.Option("1,4,16", "--batches", help="Prefill batches."),
    prompt_lens: str = typer.Option("128,512,2048,4096", "--prompt-lens"),
    decode_batches: str = typer.Option("1,8,32,64,128,256", "--decode-batches"),
    context_lens: str = typer.Option("512,2048", "--context-lens"),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repetitions per point (median)."),
) -> None:
    """Measure a profile on this machine's CUDA GPU: eager Hugging Face, and vLLM when it is installed."""
    from simulator.profiles.measure import MeasureGrid, measure, resolve_engines

    try:
        grid = MeasureGrid.parse(batches, prompt_lens, decode_batches, context_lens)
        paths = measure(model, grid, out, resolve_engines(engine), repeats=repeats)
    except (RuntimeError, ValueError) as exc:
        _fail(exc)
    for path in paths:
        console.print(f"profile written to {path}")
