"""`kis controller`: run the KIScaler reconcile loop, print the CRD."""

from __future__ import annotations

import enum
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Run the KIScaler controller.", no_args_is_help=True)
CRD = Path(__file__).resolve().parent / "crd" / "inferenceautoscalers.yaml"  # the chart links to this file


class LogFormat(str, enum.Enum):
    json = "json"
    console = "console"


def api_client(kubeconfig: Path | None, context: str | None) -> Any:
    """The official client's ApiClient: the kubeconfig when given, else in-cluster config, else ~/.kube/config."""
    from kubernetes import client, config

    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise typer.BadParameter(f"no such file: {kubeconfig}", param_hint="--kubeconfig")
        return config.new_client_from_config(config_file=str(kubeconfig), context=context)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config(context=context)
        except (config.ConfigException, OSError) as exc:
            raise typer.BadParameter(f"no in-cluster config and no usable kubeconfig: {exc}", param_hint="--kubeconfig") from exc
    return client.ApiClient()


@app.command("run")
def run_command(
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config)."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    prometheus_url: str = typer.Option("http://prometheus:9090", "--prometheus-url", help="Prometheus base URL."),
    prometheus_token_file: Path | None = typer.Option(None, "--prometheus-token-file", help="Bearer token file (re-read each tick)."),
    prometheus_ca_file: Path | None = typer.Option(None, "--prometheus-ca-file", help="CA bundle for Prometheus TLS."),
    namespace: str | None = typer.Option(None, "--namespace", help="Only this namespace (default: all)."),
    interval: float = typer.Option(15.0, "--interval", min=0.1, help="Seconds between ticks (the policies' control interval)."),
    once: bool = typer.Option(False, "--once", help="Run one tick and exit (no leader election, no HTTP server)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and report, patch no Scale."),
    json_output: bool = typer.Option(False, "--json", help="With --once: print the tick's decisions as JSON on stdout."),
    leader_elect: bool = typer.Option(True, "--leader-elect/--no-leader-elect", help="Only the Lease holder reconciles."),
    lease_name: str = typer.Option("kis-controller", "--lease-name", help="Name of the leader-election Lease."),
    lease_namespace: str = typer.Option(os.environ.get("POD_NAMESPACE", "default"), "--lease-namespace",
                                        help="Namespace of the Lease (default: $POD_NAMESPACE or default)."),
    lease_duration: float = typer.Option(15.0, "--lease-duration", min=1.0, help="Seconds a Lease stays valid without renewal; renewed every third of it."),
    metrics_port: int = typer.Option(8080, "--metrics-port", min=0, max=65535, help="Port of /healthz, /readyz, /metrics, /decisions (0: none)."),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address the HTTP server listens on."),
    log_format: LogFormat = typer.Option(LogFormat.json, "--log-format", case_sensitive=False, help="Log lines as JSON or for a console."),
) -> None:
    """Reconcile InferenceAutoscalers: Prometheus -> observation -> policy -> guardrails -> Scale."""
    import structlog

    from controller.kube import KubeClient
    from controller.leader import LeaderElector, run_elections
    from controller.logs import configure_logging
    from controller.loop import Reconciler
    from controller.prometheus import PrometheusReader
    from controller.server import ControllerStatus, create_app, decision_json, run_server_in_thread
    from controller.telemetry import ControllerMetrics

    configure_logging(log_format.value)
    log = structlog.get_logger("kis.controller")
    if json_output and not once:
        raise typer.BadParameter("--json needs --once", param_hint="--json")
    try:
        reader = PrometheusReader(prometheus_url, bearer_token_file=prometheus_token_file,
                                  ca_file=str(prometheus_ca_file) if prometheus_ca_file else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--prometheus-url/--prometheus-ca-file") from exc
    kube = KubeClient(api_client(kubeconfig, context))
    metrics, status = ControllerMetrics(), ControllerStatus(max_tick_age_s=max(60.0, 4 * interval))
    reconciler = Reconciler(kube, reader, metrics=metrics, status=status, namespace=namespace, interval_s=interval, dry_run=dry_run)
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    log.info("controller_start", prometheus=prometheus_url, namespace=namespace or "*", interval_s=interval, dry_run=dry_run,
             identity=identity, leader_elect=leader_elect and not once)

    if once:
        report = reconciler.tick(time.time())
        for key, record in report.decisions.items():
            log.info("decision", autoscaler=key, current=record.current_replicas, final=record.final, reason=record.reason)
        log.info("controller_stop", errors=len(report.errors))
        if json_output:
            decisions = [decision_json(*key.split("/", 1), record) for key, record in report.decisions.items()]
            typer.echo(json.dumps({"decisions": decisions, "patched": [{"autoscaler": k, "replicas": r} for k, r in report.patched],
                                   "errors": [{"kind": k, "message": m} for k, m in report.errors], "dry_run": dry_run}, indent=2))
        return

    stop = threading.Event()
    for sig_name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig_name, lambda *_: stop.set())
    server = run_server_in_thread(create_app(status, metrics), metrics_host, metrics_port) if metrics_port else None
    leading = threading.Event()

    def on_change(leader: bool) -> None:
        (leading.set if leader else leading.clear)()
        metrics.set_leader(leader)
        status.set_leader(leader)

    elections = None
    if leader_elect:
        # A client of its own: renewals go on while a long tick holds the loop's connections.
        elector = LeaderElector(KubeClient(api_client(kubeconfig, context)), lease_namespace, lease_name, identity, lease_duration)
        elections = run_elections(elector, stop, on_change)
    else:
        on_change(True)
    try:
        while not stop.is_set():
            started = time.monotonic()
            if leading.is_set():
                report = reconciler.tick(time.time())
                for key, record in report.decisions.items():
                    log.info("decision", autoscaler=key, current=record.current_replicas, final=record.final, reason=record.reason)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        stop.set()
        if elections is not None:
            elections.join(timeout=10.0)
        if server is not None:
            server.stop()
        log.info("controller_stop")


@app.command("crd")
def crd_command() -> None:
    """Print the InferenceAutoscaler CRD (YAML), e.g. ``kis controller crd | kubectl apply -f -``."""
    typer.echo(CRD.read_text(), nl=False)
