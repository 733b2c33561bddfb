"""The ``kis`` command line: one entry point for the simulator, training,
evaluation, the stub server, the load generator and the controller."""

from __future__ import annotations

import typer

from controller import cli as controller_cli
from simulator.cli import lb, loadgen, obs, pipeline, profile, stub, twin, workload
from simulator.cli.calibrate import calibrate_command
from simulator.cli.capacity import capacity_command
from simulator.cli.evaluate import demo_command, evaluate_command
from simulator.cli.simulate import simulate_command
from simulator.cli.train import train_command

app = typer.Typer(
    name="kis",
    help="KIS-S: learn GPU LLM-inference autoscaling offline, run it safely on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("simulate")(simulate_command)
app.add_typer(workload.app, name="workload", help="Inspect and export workloads and traces.")
app.add_typer(profile.app, name="profile", help="GPU profiles and the engine latency model.")
app.add_typer(stub.app, name="stub", help="The stub OpenAI-compatible inference server.")
app.add_typer(loadgen.app, name="loadgen", help="Replay a workload against an OpenAI-compatible endpoint.")
app.add_typer(lb.app, name="lb", help="Reinforcement-learning load balancing experiments.")
app.add_typer(obs.app, name="obs", help="The observation schema of learned policies.")
app.add_typer(pipeline.app, name="pipeline", help="Multi-stage pipelines: bottlenecks and controllers.")
app.command("capacity")(capacity_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("demo")(demo_command)
app.add_typer(twin.app, name="twin", help="The whole autoscaling loop on this machine; `kis twin soak`: with faults.")
app.command("calibrate")(calibrate_command)
app.add_typer(controller_cli.app, name="controller", help="Run the KIScaler controller.")

if __name__ == "__main__":  # pragma: no cover
    app()
