"""``kis train``: learn a scaling policy in simulation."""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.cli.common import console, err_console, print_error, print_json

DEFAULT_CONFIG = Path("configs/train/ppo.yaml")


def train_command(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML training config (see configs/train/)."),
    algo: str | None = typer.Option(None, "--algo", help="Override: ppo, a2c, dqn, qlearning or rollout."),
    steps: int | None = typer.Option(None, "--steps", help="Override: total environment steps (episodes x steps for qlearning)."),
    seed: int | None = typer.Option(None, "--seed", help="Override: seed."),
    cluster: Path | None = typer.Option(None, "--cluster", help="Cluster YAML (e.g. from kis calibrate) replacing the config's cluster section."),
    seeds: str | None = typer.Option(None, "--seeds", help="Several runs, one per seed (comma-separated); with --set, every combination."),
    sets: list[str] = typer.Option([], "--set", help="KEY=V1,V2,...: one run per value of a config field (dotted, e.g. env.slo_weight); repeatable."),
    vec_env: str | None = typer.Option(None, "--vec-env", help="Override: dummy (envs step in the trainer's process) or subproc (a process each)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Runs at once for several runs, or a rollout run's episodes "
                                       "at once (default: one per core)."),
    ray: str | None = typer.Option(None, "--ray", help="Several runs (or a rollout run's episodes) on Ray: 'auto' (local) or ray://HOST:10001."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Output folder (several runs: one subfolder each)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Train a policy on kis/Autoscale-v0: rollouts (policy iteration on the planner, the shipped default),
    PPO, A2C or DQN with stable-baselines3, or tabular Q-learning.

    Writes the torch-free policy artifact (artifact/: policy.onnx and
    metadata.json) that the controller loads unchanged; SB3 runs also write CSV
    and TensorBoard logs, periodic evaluations (eval_curve.csv) and the model,
    rollout runs their labelled samples (rollouts.npz). With --seeds or --set,
    trains every combination at once (a process pool, or Ray), one folder each
    under --out, and prints a table of the runs.
    """
    from simulator.training.config import load_train_config

    try:
        cfg = load_train_config(config, {"algo": algo, "total_steps": steps, "seed": seed, "vec_env": vec_env}, cluster=cluster)
        grid = _plan(cfg, seeds, sets, out) if seeds is not None or sets else None
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    if grid is not None:
        _train_grid(grid, workers, ray, out, progress, as_json)
        return
    if cfg.algo == "qlearning":
        _train_q(cfg, out, progress, as_json)
        return
    if cfg.algo == "rollout":
        _train_rollout(cfg, out, workers, ray, progress, as_json)
        return
    try:
        from simulator.training.sb3 import summary_json, train_sb3
    except ImportError as exc:  # pragma: no cover - depends on the install
        err_console.print(f"[red]error:[/red] training needs the train extra (pip install 'kis-s[train]'): {exc}")
        raise typer.Exit(2) from exc
    train_sb3(cfg, out, progress=progress and not as_json)
    summary = summary_json(out)
    if as_json:
        print_json(summary)
        return
    evals = summary["evaluations"]
    console.print(f"trained {cfg.algo} for {cfg.total_steps:,} steps -> {out}")
    if evals:
        console.print(f"last evaluation: mean episode reward {evals[-1]['mean_reward']:.2f} at {evals[-1]['timesteps']:,} steps")
    console.print(f"artifact: {summary['artifact']}  (TensorBoard: tensorboard --logdir {out})")


def _plan(cfg, seeds: str | None, sets: list[str], out: Path):
    from simulator.training.runs import parse_set, plan_runs

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds is not None else [cfg.seed]
    except ValueError as exc:
        raise ValueError(f"--seeds {seeds!r}: expected comma-separated integers") from exc
    return plan_runs(cfg, seed_list, [parse_set(s) for s in sets], out)


def _train_grid(grid, workers: int | None, ray: str | None, out: Path, progress: bool, as_json: bool) -> None:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from simulator.executor import make_executor
    from simulator.training.runs import train_many

    try:
        executor = make_executor(min(workers or len(grid), len(grid)) if not ray else workers, ray)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with executor, Progress(*columns, console=err_console, disable=not progress or as_json, transient=True) as bar:
            task = bar.add_task(f"training {len(grid)} runs", total=len(grid))
            outcomes = train_many(grid, executor, on_done=lambda o: bar.update(task, advance=1, description=f"finished {grid[o.index].name}"))
    except (RuntimeError, ValueError) as exc:  # Ray missing or unreachable
        print_error(exc)
        raise typer.Exit(2) from exc
    runs = [o.value if o.ok else {"run": grid[o.index].name, "out_dir": grid[o.index].out_dir, "error": o.failure.error} for o in outcomes]
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=2))
    for o in outcomes:
        if not o.ok:
            print_error(f"run failed: {o.failure}")
    if as_json:
        print_json({"runs": runs, "out_dir": str(out)})
    else:
        table = Table(title=f"{len(grid)} training runs -> {out}")
        for name, justify in (("run", "left"), ("last reward", "right"), ("best reward", "right"), ("time", "right")):
            # the run name folds onto further lines, so the numbers keep their columns at 80 columns
            table.add_column(name, justify=justify, overflow="fold", ratio=1 if name == "run" else None,
                             no_wrap=name != "run")
        for run in runs:
            fmt = (lambda v: "-" if v is None else f"{v:.2f}")
            table.add_row(run["run"], fmt(run.get("last_reward")), fmt(run.get("best_reward")),
                          f"{run['seconds']:.0f} s" if "seconds" in run else "failed")
        console.print(table)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


def _train_rollout(cfg, out: Path, workers: int | None, ray: str | None, progress: bool, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.executor import make_executor

    try:
        from simulator.training.rollout import train_rollout

        executor = make_executor(workers, ray)
    except ImportError as exc:  # pragma: no cover - depends on the install
        err_console.print(f"[red]error:[/red] training needs the train extra (pip install 'kis-s[train]'): {exc}")
        raise typer.Exit(2) from exc
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with executor, Progress(*columns, console=err_console, disable=not progress or as_json, transient=True) as bar:
            task = bar.add_task("rollout episodes", total=cfg.rollout.episodes * cfg.rollout.rounds)
            summary = train_rollout(cfg, out, executor, on_episode=lambda _: bar.update(task, advance=1))
    except RuntimeError as exc:  # an episode failed, or Ray is missing or unreachable
        print_error(exc)
        raise typer.Exit(1) from exc
    if as_json:
        print_json(summary)
        return
    shares = ", ".join(f"{step}: {n}" for step, n in summary["labels"].items())
    rounds = f" x {cfg.rollout.rounds} rounds" if cfg.rollout.rounds > 1 else ""
    console.print(f"rollout: {cfg.rollout.episodes} episodes{rounds}, {summary['samples']:,} labelled steps in "
                  f"{summary['seconds']:.0f} s -> {out}")
    console.print(f"labels by residual step: {shares}")
    console.print(f"artifact: {summary['artifact']}")


def _train_q(cfg, out: Path, progress: bool, as_json: bool) -> None:
    from rich.progress import Progress

    from simulator.training.runs import train_qlearning_run

    steps_per_episode = int(cfg.env.episode_duration_s // cfg.env.interval_s)
    episodes = max(1, cfg.total_steps // steps_per_episode)
    with Progress(console=err_console, disable=not progress or as_json, transient=True) as bar:
        task = bar.add_task("q-learning episodes", total=episodes)
        result = train_qlearning_run(cfg, out, on_episode=lambda log: bar.update(task, advance=1))
    summary = {"out_dir": str(out), "episodes": result["episodes"], "last_reward": result["last_reward"], "last_slo_misses": result["last_slo_misses"]}
    if as_json:
        print_json(summary)
    else:
        console.print(f"q-learning: {episodes} episodes -> {out / 'qtable.npz'}; last episode reward {result['last_reward']:.2f}")
