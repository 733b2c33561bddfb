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
CRD = Path(__file__).resolve().parent / "crd" / "inferenceautoscalers.yaml"  # the chart copies these files
PIPELINE_CRD = CRD.with_name("inferencepipelineautoscalers.yaml")


class LogFormat(str, enum.Enum):
    json = "json"
    console = "console"


class GpuJoin(str, enum.Enum):
    serving_pods = "serving-pods"
    kube_state_metrics = "kube-state-metrics"
    labels = "labels"


def api_client(kubeconfig: Path | None, context: str | None, pool: int = 10, user_agent: str | None = None) -> Any:
    """The official client's ApiClient: the kubeconfig when given, else in-cluster config, else ~/.kube/config.

    :param pool: connections kept to the API server (one per concurrent request: workers and the event sender).
    :param user_agent: sent with every request (the API server's audit log then names the replica).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise typer.BadParameter(f"no such file: {kubeconfig}", param_hint="--kubeconfig")
        config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            try:
                config.load_kube_config(context=context, client_configuration=configuration)
            except (config.ConfigException, OSError) as exc:
                raise typer.BadParameter(f"no in-cluster config and no usable kubeconfig: {exc}", param_hint="--kubeconfig") from exc
    configuration.connection_pool_maxsize = pool
    api = client.ApiClient(configuration)
    if user_agent:
        api.user_agent = user_agent
    return api


@app.command("run")
def run_command(
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config)."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    prometheus_url: str = typer.Option("http://prometheus:9090", "--prometheus-url", help="Prometheus base URL."),
    prometheus_token_file: Path | None = typer.Option(None, "--prometheus-token-file", help="Bearer token file (re-read each tick)."),
    prometheus_ca_file: Path | None = typer.Option(None, "--prometheus-ca-file", help="CA bundle for Prometheus TLS."),
    namespace: str | None = typer.Option(None, "--namespace", help="Only this namespace (default: all)."),
    gpu_join: GpuJoin = typer.Option(GpuJoin.serving_pods, "--gpu-join", case_sensitive=False,
                                     help="How dcgm-exporter's GPU series find a target's pods (deploy/README.md, GPU utilisation)."),
    interval: float = typer.Option(15.0, "--interval", min=0.1, help="Seconds between ticks (the policies' control interval)."),
    once: bool = typer.Option(False, "--once", help="Run one tick and exit (no leader election, no HTTP server)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and report, patch no Scale."),
    json_output: bool = typer.Option(False, "--json", help="With --once: print the tick's decisions as JSON on stdout."),
    leader_elect: bool = typer.Option(True, "--leader-elect/--no-leader-elect", help="Only the Lease holder reconciles."),
    lease_name: str = typer.Option("kis-controller", "--lease-name", help="Name of the leader-election Lease."),
    lease_namespace: str = typer.Option(os.environ.get("POD_NAMESPACE", "default"), "--lease-namespace",
                                        help="Namespace of the Lease (default: $POD_NAMESPACE or default)."),
    lease_duration: float = typer.Option(15.0, "--lease-duration", min=1.0, help="Seconds a Lease stays valid without renewal; renewed every third of it."),
    liveness_intervals: int = typer.Option(4, "--liveness-intervals", min=2,
                                           help="/healthz fails and the Lease is not renewed once the loop has made no progress for this many intervals."),
    resync: float = typer.Option(300.0, "--resync", min=10.0, help="Seconds between full re-lists of the watched autoscalers and Deployments."),
    workers: int = typer.Option(8, "--workers", min=1, max=64, help="Targets reconciled (decided and written) at a time."),
    artifact_refresh: float = typer.Option(60.0, "--artifact-refresh", min=0.0, help="Seconds between looks at a learned policy's source for a new version."),
    metrics_port: int = typer.Option(8080, "--metrics-port", min=0, max=65535, help="Port of /healthz, /readyz, /metrics, /decisions (0: none)."),
    metrics_host: str = typer.Option("0.0.0.0", "--metrics-host", help="Address the HTTP server listens on."),
    log_format: LogFormat = typer.Option(LogFormat.json, "--log-format", case_sensitive=False, help="Log lines as JSON or for a console."),
) -> None:
    """Reconcile InferenceAutoscalers: Prometheus -> observation -> policy -> guardrails -> Scale."""
    import structlog

    from controller.events import EventRecorder
    from controller.informer import KubeCache
    from controller.kube import KubeClient
    from controller.leader import LeaderElector, run_elections
    from controller.logs import configure_logging
    from controller.loop import Reconciler
    from controller.prometheus import PrometheusReader
    from controller.server import ControllerStatus, create_app, decision_json, run_server_in_thread
    from controller.signals import signals_with_gpu_join
    from controller.telemetry import ControllerMetrics

    configure_logging(log_format.value)
    log = structlog.get_logger("kis.controller")
    if json_output and not once:
        raise typer.BadParameter("--json needs --once", param_hint="--json")
    try:
        reader = PrometheusReader(prometheus_url, bearer_token_file=prometheus_token_file,
                                  ca_file=str(prometheus_ca_file) if prometheus_ca_file else None, signals=signals_with_gpu_join(gpu_join.value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--prometheus-url/--prometheus-ca-file") from exc
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    agent = f"kis-controller/{identity}"
    kube = KubeClient(api_client(kubeconfig, context, pool=workers + 6, user_agent=agent))
    metrics = ControllerMetrics()
    status = ControllerStatus(max_tick_age_s=max(60.0, 4 * interval), stall_after_s=liveness_intervals * interval)
    metrics.bind_progress(lambda: status.last_progress_wall, interval)
    log.info("controller_start", prometheus=prometheus_url, namespace=namespace or "*", interval_s=interval, dry_run=dry_run,
             identity=identity, leader_elect=leader_elect and not once, workers=workers)

    if once:
        reconciler = Reconciler(kube, reader, metrics=metrics, status=status, namespace=namespace, interval_s=interval, dry_run=dry_run)
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
    leading = threading.Event()
    # Informers with a client of their own (a watch holds its connection); Events in the background.
    cache = KubeCache(api_client(kubeconfig, context, user_agent=agent), namespace, resync_s=resync, stale_after_s=max(60.0, 4 * interval)).start()
    events = EventRecorder(kube)
    reconciler = Reconciler(kube, reader, metrics=metrics, status=status, namespace=namespace, interval_s=interval, dry_run=dry_run,
                            artifact_refresh_s=artifact_refresh, cache=cache, workers=workers, events=events, fence=leading.is_set)
    server = run_server_in_thread(create_app(status, metrics), metrics_host, metrics_port) if metrics_port else None

    def on_change(leader: bool) -> None:
        (leading.set if leader else leading.clear)()
        metrics.set_leader(leader)
        status.set_leader(leader)

    elections = None
    if leader_elect:
        # A client of its own: renewals go on while a long tick holds the loop's connections, but only while the loop progresses.
        elector = LeaderElector(KubeClient(api_client(kubeconfig, context, user_agent=agent)), lease_namespace, lease_name, identity, lease_duration,
                                healthy=status.alive)
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
            status.progress()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        stop.set()
        if elections is not None:
            elections.join(timeout=10.0)
        cache.stop()
        events.close()
        if server is not None:
            server.stop()
        log.info("controller_stop")


@app.command("crd")
def crd_command() -> None:
    """Print the InferenceAutoscaler and InferencePipelineAutoscaler CRDs (YAML), e.g. ``kis controller crd | kubectl apply -f -``."""
    typer.echo(CRD.read_text() + "---\n" + PIPELINE_CRD.read_text(), nl=False)
