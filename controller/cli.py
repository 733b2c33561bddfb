"""`kis controller`: run the KIScaler reconcile loop."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from pathlib import Path

import typer

app = typer.Typer(help="Run the KIScaler controller.", no_args_is_help=True)
CRD = Path(__file__).resolve().parent / "crd" / "inferenceautoscalers.yaml"  # the chart links to this file


def _api_client(kubeconfig: Path | None, context: str | None):
    from kubernetes import client, config

    if kubeconfig is not None:
        return config.new_client_from_config(config_file=str(kubeconfig), context=context)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(context=context)
    return client.ApiClient()


@app.command("run")
def run_command(
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config)."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    prometheus_url: str = typer.Option("http://prometheus:9090", "--prometheus-url", help="Prometheus base URL."),
    prometheus_token_file: Path | None = typer.Option(None, "--prometheus-token-file", help="Bearer token file (re-read each tick)."),
    prometheus_ca_file: Path | None = typer.Option(None, "--prometheus-ca-file", help="CA bundle for Prometheus TLS."),
    namespace: str | None = typer.Option(None, "--namespace", help="Only this namespace (default: all)."),
    interval: float = typer.Option(15.0, "--interval", help="Seconds between ticks."),
    once: bool = typer.Option(False, "--once", help="Run one tick and exit."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and report, patch no Scale."),
    leader_elect: bool = typer.Option(True, "--leader-elect/--no-leader-elect", help="Only the Lease holder reconciles."),
    lease_name: str = typer.Option("kis-controller", "--lease-name"),
    lease_namespace: str = typer.Option(os.environ.get("POD_NAMESPACE", "default"), "--lease-namespace"),
    lease_duration: float = typer.Option(30.0, "--lease-duration", help="Seconds a Lease stays valid without renewal."),
    metrics_port: int = typer.Option(8080, "--metrics-port", help="Port of /healthz, /readyz, /metrics, /decisions (0: none)."),
    log_format: str = typer.Option("json", "--log-format", help="json or console."),
) -> None:
    """Reconcile InferenceAutoscalers: Prometheus -> observation -> policy -> guardrails -> Scale."""
    import structlog

    from controller.kube import KubeClient
    from controller.leader import LeaderElector
    from controller.logs import configure_logging
    from controller.loop import Reconciler
    from controller.prometheus import PrometheusReader
    from controller.server import ControllerStatus, create_app, run_server_in_thread
    from controller.telemetry import ControllerMetrics

    configure_logging(log_format)
    log = structlog.get_logger("kis.controller")
    kube = KubeClient(_api_client(kubeconfig, context))
    reader = PrometheusReader(prometheus_url, bearer_token_file=prometheus_token_file, ca_file=str(prometheus_ca_file) if prometheus_ca_file else None)
    metrics, status = ControllerMetrics(), ControllerStatus(max_tick_age_s=max(60.0, 4 * interval))
    reconciler = Reconciler(kube, reader, metrics=metrics, status=status, namespace=namespace, interval_s=interval, dry_run=dry_run)
    server = run_server_in_thread(create_app(status, metrics), "0.0.0.0", metrics_port) if metrics_port and not once else None
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(kube, lease_namespace, lease_name, identity, lease_duration) if leader_elect and not once else None
    stop = threading.Event()
    for sig_name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig_name, lambda *_: stop.set())
    log.info("controller_start", prometheus=prometheus_url, namespace=namespace or "*", interval_s=interval, dry_run=dry_run, identity=identity)
    try:
        while not stop.is_set():
            started = time.monotonic()
            leading = True
            if elector is not None:
                leading = elector.step(dt.datetime.now(dt.timezone.utc))
                metrics.set_leader(leading)
                status.set_leader(leading)
            if leading:
                report = reconciler.tick(time.time())
                for key, record in report.decisions.items():
                    log.info("decision", autoscaler=key, current=record.current_replicas, final=record.final, reason=record.reason)
            if once:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if elector is not None:
            elector.release(dt.datetime.now(dt.timezone.utc))
        if server is not None:
            server.stop()
        log.info("controller_stop")


@app.command("crd")
def crd_command() -> None:
    """Print the InferenceAutoscaler CRD (YAML)."""
    typer.echo(CRD.read_text())
