"""``kis train``: learn a scaling policy in simulation."""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.cli.common import console, err_console, print_error, print_json

DEFAULT_CONFIG = Path("configs/train/ppo.yaml")


def train_command(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="YAML training config (see configs/train/)."),
    algo: str | None = typer.Option(None, "--algo", help="Override: ppo, a2c, dqn or qlearning."),
    steps: int | None = typer.Option(None, "--steps", help="Override: total environment steps (episodes x steps for qlearning)."),
    seed: int | None = typer.Option(None, "--seed", help="Override: seed."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Output folder: logs, TensorBoard, model, artifact."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Train PPO (main), A2C or DQN with stable-baselines3, or tabular Q-learning, on kis/Autoscale-v0.

    Writes CSV and TensorBoard logs, periodic evaluations (eval_curve.csv), the
    SB3 model, and the torch-free policy artifact (artifact/: policy.onnx and
    metadata.json) that the controller loads unchanged.
    """
    from simulator.training.config import load_train_config

    try:
        cfg = load_train_config(config, {"algo": algo, "total_steps": steps, "seed": seed})
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    if cfg.algo == "qlearning":
        _train_q(cfg, out, progress, as_json)
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


def _train_q(cfg, out: Path, progress: bool, as_json: bool) -> None:
    from rich.progress import Progress

    from simulator.training.envs import make_env
    from simulator.training.qlearning import QConfig, train_qlearning, write_episode_log

    env = make_env(cfg)
    steps_per_episode = int(cfg.env.episode_duration_s // cfg.env.interval_s)
    episodes = max(1, cfg.total_steps // steps_per_episode)
    qcfg = QConfig(episodes=episodes, seed=cfg.seed, **{k: v for k, v in cfg.hyperparameters.items() if k in ("alpha", "gamma", "epsilon_start", "epsilon_end")})
    with Progress(console=err_console, disable=not progress or as_json, transient=True) as bar:
        task = bar.add_task("q-learning episodes", total=episodes)
        table, logs = train_qlearning(env, qcfg, on_episode=lambda log: bar.update(task, advance=1))
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / "qtable.npz")
    write_episode_log(logs, out / "episodes.csv")
    summary = {"out_dir": str(out), "episodes": episodes, "last_reward": logs[-1].reward, "last_slo_misses": logs[-1].slo_misses}
    if as_json:
        print_json(summary)
    else:
        console.print(f"q-learning: {episodes} episodes -> {out / 'qtable.npz'}; last episode reward {logs[-1].reward:.2f}")
