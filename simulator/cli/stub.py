"""``kis stub``: the stub OpenAI-compatible inference server."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The stub OpenAI-compatible inference server (a simulated vLLM replica).", no_args_is_help=True)


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    gpu: str = typer.Option("H100", "--gpu", help="GPU the replica simulates."),
    model: str = typer.Option("llama-8b", "--model", help="Model shape the replica simulates."),
    timing: str = typer.Option("kernel", "--timing", help="kernel or wall iteration times."),
    engine: str = typer.Option("paged", "--engine", help="Engine mode the replica simulates: paged (vLLM) or eager (Hugging Face)."),
    calibration: list[Path] = typer.Option([], "--calibration", help="A calibration JSON, or measured profile(s) to calibrate on (repeatable)."),
    served_model_name: str = typer.Option("kis-stub", "--served-model-name", help="The model id clients ask for."),
    startup_delay: float = typer.Option(0.0, "--startup-delay", help="Seconds of simulated model load before /health is ready."),
    max_waiting: int = typer.Option(512, "--max-waiting", help="Queued requests before 429."),
    max_prompt_tokens: int = typer.Option(8192, "--max-prompt-tokens"),
    max_tokens_limit: int = typer.Option(4096, "--max-tokens-limit"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="0.1 runs the simulated GPU ten times faster than real time."),
    stream_interval: int = typer.Option(1, "--stream-interval", min=1, help="Generated tokens per streamed chunk (as vLLM's --stream-interval)."),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Serve /v1/completions, /v1/chat/completions (SSE streaming too), /v1/models, /health and /metrics."""
    import uvicorn

    from simulator.cli.common import print_error
    from simulator.stub.app import StubConfig, create_app

    config = StubConfig(gpu=gpu, model=model, timing=timing, engine=engine, calibration=tuple(str(c) for c in calibration), served_model_name=served_model_name, startup_delay_s=startup_delay,
                        max_prompt_tokens=max_prompt_tokens, max_tokens_limit=max_tokens_limit, max_waiting=max_waiting, time_scale=time_scale,
                        stream_interval=stream_interval)
    try:
        app = create_app(config)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    uvicorn.run(app, host=host, port=port, log_level=log_level)
