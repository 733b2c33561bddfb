"""``kis lb``: reinforcement-learning load balancing across heterogeneous LLM servers."""

from __future__ import annotations

from pathlib import Path

import typer

from simulator.cli.common import console, err_console, print_json

app = typer.Typer(help="Reinforcement-learning load balancing experiments.", no_args_is_help=True)


@app.command("train")
def train_command(
    algo: str = typer.Option("ppo", "--algo", help="ppo, a2c or dqn."),
    scenario: str = typer.Option("high-load-hetero", "--scenario", help="nominal, high-load-hetero, bursty, azure-code, azure-conv."),
    steps: int = typer.Option(20_000, "--steps"),
    seed: int = typer.Option(0, "--seed"),
    requests: int = typer.Option(1000, "--requests", help="Requests per episode."),
    out: Path = typer.Option(Path("runs/lb"), "--out"),
) -> None:
    """Train a router (MLP 128x128, learning rate 3e-4, gamma 0.99); saves the SB3 model and a learning-curve CSV."""
    from simulator.lb.experiment import ALGOS, scenarios, train_agent

    known = scenarios(requests)
    if algo not in ALGOS or scenario not in known:
        err_console.print(f"[red]error:[/red] --algo must be one of {', '.join(ALGOS)} and --scenario one of {', '.join(known)}")
        raise typer.Exit(2)
    train_agent(algo, known[scenario], steps, seed, out)
    console.print(f"model: {out / f'{algo}-{scenario}.zip'}; learning curve: {out / f'{algo}-{scenario}.monitor.csv'}")


@app.command("evaluate")
def evaluate_command(
    models: list[Path] = typer.Option([], "--model", help="Trained router(s) (.zip from `kis lb train`); the name's algorithm prefix labels it."),
    scenario: list[str] = typer.Option([], "--scenario", help="Scenarios (default: all)."),
    seeds: int = typer.Option(3, "--seeds", help="Episodes per router and scenario."),
    requests: int = typer.Option(1000, "--requests"),
    out: Path = typer.Option(Path("out/lb"), "--out"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Heuristic and learned routers side by side: reward, mean/p95 response, queue, SLO violations; report with plots."""
    import numpy as np

    from simulator.lb.experiment import BASELINES, RouterResult, baseline_chooser, make_env, model_chooser, run_episode, scenarios
    from simulator.lb.report import write_lb_report

    known = scenarios(requests)
    chosen = scenario or list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        err_console.print(f"[red]error:[/red] unknown scenario(s) {unknown}; known: {', '.join(known)}")
        raise typer.Exit(2)
    learned = {}
    for path in models:
        from stable_baselines3 import A2C, DQN, PPO

        algo = path.stem.split("-")[0]
        learned[path.stem] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[algo].load(path, device="cpu")
    results = []
    for name in chosen:
        sc = known[name]
        routers = {b: (lambda s, b=b: baseline_chooser(b, s)) for b in BASELINES}
        routers |= {label: (lambda s, m=m: model_chooser(m)) for label, m in learned.items() if len(known[name].servers) == m.action_space.n}
        for router, factory in routers.items():
            runs = [run_episode(make_env(sc), factory(seed), seed, router, name) for seed in range(seeds)]
            results.append(RouterResult(router, name, float(np.mean([r.reward for r in runs])), float(np.mean([r.mean_response_s for r in runs])),
                                        float(np.mean([r.p95_response_s for r in runs])), float(np.mean([r.mean_queue for r in runs])),
                                        float(np.mean([r.slo_violation_rate for r in runs])), runs[0].per_server, runs[0].response_times))
    report = write_lb_report(results, out)
    if as_json:
        print_json([{k: v for k, v in r.__dict__.items() if k != "response_times"} for r in results])
        return
    for r in results:
        console.print(f"{r.scenario:18s} {r.router:28s} mean {r.mean_response_s:6.2f} s  p95 {r.p95_response_s:6.2f} s  SLO viol {r.slo_violation_rate:6.1%}  queue {r.mean_queue:6.1f}")
    console.print(f"report: {report}")
