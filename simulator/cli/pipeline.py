"""``kis pipeline``: multi-stage pipelines, their bottlenecks and controllers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich import box
from rich.table import Table

from simulator.cli.common import console, print_error, print_json

app = typer.Typer(help="Multi-stage pipelines (RAG, speech, disaggregated prefill/decode).", no_args_is_help=True)


@contextmanager
def _bad_input_exits_2() -> Iterator[None]:
    """A bad pipeline spec or CLI value: one ``error:`` line and exit 2."""
    from simulator.pipeline.spec import PipelineSpecError

    try:
        yield
    except PipelineSpecError as exc:
        print_error(f"PipelineSpecError: {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from None


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _fmt(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in ("slo_attainment", "bottleneck_accuracy"):
        return f"{value:.0%}"
    if key == "cost_usd":
        return f"${value:.2f}"
    if key.endswith("_s"):
        return f"{value:.1f}s" if value >= 10 else f"{value:.2f}s"
    return f"{value:.1f}" if key == "scale_events" else f"{value:.2f}"


@app.command("evaluate")
def evaluate_command(
    pipelines: str = typer.Option("rag,speech,disagg", "--pipelines", help="Built-ins (rag, speech, disagg) or YAML files, comma-separated."),
    patterns: str = typer.Option("ramp,periodic,spike", "--patterns", help="Workload patterns, comma-separated."),
    controllers: str = typer.Option("hpa,kpa,planner,incontext", "--controllers", help="hpa, kpa, planner, incontext (ppo with --ppo)."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds 0..N-1 per cell."),
    duration: float = typer.Option(600.0, "--duration", help="Seconds of traffic per episode."),
    interval: float = typer.Option(15.0, "--interval", help="Seconds between decisions."),
    bottleneck_every: int = typer.Option(4, "--bottleneck-every", help="Score the bottleneck detector every N decisions (0: never)."),
    llm_url: str = typer.Option("", "--llm-url", help="An OpenAI-compatible /v1 URL: the in-context controller asks this LLM (key: $OPENAI_API_KEY)."),
    llm_model: str = typer.Option("", "--llm-model", help="Model name for --llm-url."),
    ppo: list[str] = typer.Option([], "--ppo", help="A directory of kis pipeline train (repeatable): adds ppo for its pipeline."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """P99 and mean end-to-end latency, SLO attainment, cost, GPU-hours, scale events and bottleneck accuracy
    per controller, pipeline and pattern."""
    from simulator.pipeline.evaluate import CONTROLLERS, evaluate
    from simulator.pipeline.ppo import load_meta
    from simulator.pipeline.spec import resolve_pipeline
    from simulator.pipeline.workloads import PATTERNS

    with _bad_input_exits_2():
        specs = [resolve_pipeline(p) for p in _split(pipelines)]
        chosen_patterns, chosen = _split(patterns), _split(controllers)
        ppo_metas = {str(d): load_meta(d) for d in ppo}
        if ppo and "ppo" not in chosen:
            chosen.append("ppo")
        bad = [p for p in chosen_patterns if p not in PATTERNS] + [c for c in chosen if c not in CONTROLLERS]
        if bad:
            raise ValueError(f"unknown pattern(s) or controller(s): {', '.join(bad)}; patterns: {', '.join(PATTERNS)}; "
                             f"controllers: {', '.join(CONTROLLERS)}")
        if not specs or not chosen_patterns or not chosen or seeds < 1 or duration <= 0 or interval <= 0:
            raise ValueError("need at least one pipeline, pattern and controller, --seeds >= 1, --duration and --interval > 0")
    selector = None
    if llm_url:
        from simulator.pipeline.llm_selector import LLMSelector

        selector = LLMSelector(base_url=llm_url, model=llm_model or "default", api_key=os.environ.get("OPENAI_API_KEY", "none"))
    ppo_models = {}
    if ppo_metas:
        from simulator.pipeline.ppo import PpoController

        ppo_models = {meta["pipeline"]: PpoController.load(d) for d, meta in ppo_metas.items()}
    rows = evaluate(specs, chosen_patterns, chosen, list(range(seeds)), duration_s=duration, interval_s=interval,
                    bottleneck_every=bottleneck_every, selector=selector, ppo_models=ppo_models)
    if as_json:
        print_json({"rows": rows, "seeds": seeds, "duration_s": duration, "interval_s": interval,
                    "llm": None if selector is None else {"model": selector.model, "calls": selector.calls,
                                                          "prompt_tokens": selector.prompt_tokens,
                                                          "completion_tokens": selector.completion_tokens,
                                                          "fallbacks": selector.fallbacks}})
        return
    table = Table(title=f"pipelines, {seeds} seed(s), {duration:g} s", box=box.SIMPLE, padding=(0, 1), pad_edge=False,
                  show_edge=False)  # nine columns in 80
    columns = [("pipeline", "pipeline"), ("pattern", "pattern"), ("controller", "ctrl"), ("p99_s", "P99"), ("mean_s", "mean"),
               ("slo_attainment", "SLO"), ("cost_usd", "cost"), ("scale_events", "scales"), ("bottleneck_accuracy", "bneck")]
    for _, label in columns:
        table.add_column(label, justify="left" if label in ("pipeline", "pattern", "ctrl") else "right", no_wrap=True)
    for row in rows:
        table.add_row(*[str(row[k]) if k in ("pipeline", "pattern", "controller") else _fmt(k, row[k]) for k, _ in columns])
    console.print(table)
    if selector is not None:  # the in-context rows asked the LLM: how often it answered usably
        fell_back = sum(selector.fallbacks.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(selector.fallbacks.items())) or "none"
        console.print(f"LLM {selector.model}: {selector.calls} calls, {selector.prompt_tokens + selector.completion_tokens} "
                      f"tokens; {fell_back} fell back to the planner ({reasons})", highlight=False, markup=False)


@app.command("train")
def train_command(
    pipeline: str = typer.Option("rag", "--pipeline", help="A built-in (rag, speech, disagg) or a YAML file."),
    steps: int = typer.Option(20000, "--steps", help="Environment steps of PPO (one step: one 15 s decision)."),
    out: str = typer.Option(..., "--out", help="Directory for model.zip and meta.json."),
    patterns: str = typer.Option("ramp,periodic,spike", "--patterns", help="Patterns drawn per episode, comma-separated."),
    seed: int = typer.Option(0, "--seed", help="Seed of PPO and of the episodes' workloads."),
    budget: int = typer.Option(12, "--budget", help="Shared GPU budget (total replicas) of kis/Pipeline-v0."),
) -> None:
    """Train PPO on kis/Pipeline-v0 for one pipeline (CPU); evaluate it with kis pipeline evaluate --ppo DIR."""
    from simulator.pipeline.spec import resolve_pipeline
    from simulator.pipeline.workloads import PATTERNS

    with _bad_input_exits_2():
        resolve_pipeline(pipeline)  # a bad spec is one line, before training starts
        bad = [p for p in _split(patterns) if p not in PATTERNS]
        if bad or not _split(patterns) or steps < 1:
            raise ValueError(f"need --steps >= 1 and patterns among {', '.join(PATTERNS)}" + (f"; unknown: {', '.join(bad)}" if bad else ""))
        from simulator.pipeline.ppo import train_ppo

        meta = train_ppo(pipeline, steps, out, patterns=patterns,
                         seed=seed, gpu_budget=budget)
    console.print(f"trained ppo on {meta['pipeline']} for {meta['steps']} steps in {meta['train_seconds']} s: {out}")
