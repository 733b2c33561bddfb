"""The local closed loop: everything of a cluster deployment on one machine.

Kubernetes API emulator (a Deployment and its InferenceAutoscaler) ->
replica actuator (stub servers with model-load delay, draining) -> gateway
-> real Prometheus (file service discovery, 1 s scrapes) -> the controller's
own reconcile loop (PrometheusReader, KubeClient over HTTP) -> Scale patches
-> actuator. The load generator replays a spike against the gateway.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from controller.kube import KubeClient
from controller.loop import Reconciler
from controller.prometheus import PrometheusReader
from controller.server import run_server_in_thread
from controller.signals import GATEWAY_METRIC
from simulator.loadgen.replay import RequestResult
from simulator.stub.app import StubConfig
from simulator.twin.apiserver import KubeEmulator
from simulator.twin.replicas import ReplicaActuator, create_gateway
from simulator.twin.session import every, replay_and_drain, stop_threads, wait_until
from simulator.workloads.workload import Workload

NAMESPACE, DEPLOYMENT = "default", "llm"


@dataclass(frozen=True)
class TwinConfig:
    """:param policy: the InferenceAutoscaler's policy block. :param interval_s: controller tick.
    :param stabilization_s: scale-down stabilisation. :param startup_delay_s: model load of a new replica.
    :param drain_s: how long to keep running after the load ends (to see the scale-down).
    :param stream_interval: tokens per streamed chunk. Replicas, gateway and load generator share one
        Python process here, so streaming every token would make the loop CPU-bound, not GPU-bound."""

    policy: dict = field(default_factory=lambda: {"type": "hpa", "parameters": {
        "metric": "requests_per_replica", "target": 8, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}}}})
    min_replicas: int = 1
    max_replicas: int = 6
    interval_s: float = 2.0
    window_s: int = 10
    stabilization_s: float = 15.0
    startup_delay_s: float = 3.0
    drain_s: float = 30.0
    time_scale: float = 1.0
    scrape_interval_s: int = 1
    stream_interval: int = 16
    idle_s: float = 30.0  #: with min_replicas 0, the last replica goes after this long without traffic


@dataclass
class TwinResult:
    timeline: list[tuple[float, int, int]]  # (t, desired, ready)
    requests: list[RequestResult]
    decisions: list[tuple[float, str]]


class PrometheusProcess:
    """``prometheus`` on a free loopback port, scraping file-SD targets every second."""

    def __init__(self, workdir: Path, targets_file: Path, scrape_interval_s: int = 1, port: int | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("the closed loop needs the prometheus binary (Debian: apt-get install prometheus)")
        if port is None:  # a restart passes the port (and the workdir: the same TSDB) of the one it replaces
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        config = workdir / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {scrape_interval_s}s, evaluation_interval: {scrape_interval_s}s}}\n"
            f"scrape_configs:\n  - job_name: serving\n    file_sd_configs: [{{files: ['{targets_file}'], refresh_interval: 1s}}]\n"
        )
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("Prometheus did not become ready within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_twin(workload: Workload, config: TwinConfig = TwinConfig(), *, on_sample: Callable[[float, int, int, int], None] | None = None) -> TwinResult:
    """Run the whole loop for the workload plus ``drain_s``; returns the timeline and every request."""
    workdir = Path(tempfile.mkdtemp(prefix="kis-twin-"))
    targets = workdir / "targets.json"
    targets.write_text("[]")
    with ExitStack() as resources:
        resources.callback(shutil.rmtree, workdir, ignore_errors=True)
        emulator = KubeEmulator(auto_ready=False)
        emulator.start()
        resources.callback(emulator.stop)
        emulator.put("deployments", {"metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE}, "spec": {"replicas": config.min_replicas},
                                     "status": {"readyReplicas": 0}})
        emulator.put("inferenceautoscalers", {"metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "generation": 1}, "spec": {
            "scaleTargetRef": {"name": DEPLOYMENT}, "minReplicas": config.min_replicas, "maxReplicas": config.max_replicas, "policy": config.policy,
            "metrics": {"windowSeconds": config.window_s, "longWindowSeconds": max(config.window_s, 60)},
            "behavior": {"scaleDownStabilizationSeconds": config.stabilization_s},
            # The gateway holds requests while no replica is ready and exports how many: the activation signal.
            "scaleToZero": {"activationQuery": f"sum({GATEWAY_METRIC}{{{{sel}}}})", "idleSeconds": config.idle_s}}})
        stub = StubConfig(startup_delay_s=config.startup_delay_s, time_scale=config.time_scale, stream_interval=config.stream_interval)
        actuator = ReplicaActuator(emulator, NAMESPACE, DEPLOYMENT, stub, targets)
        resources.callback(actuator.stop)
        prometheus = PrometheusProcess(workdir, targets, config.scrape_interval_s)
        resources.callback(prometheus.stop)
        gateway = run_server_in_thread(create_gateway(actuator), port=0)
        resources.callback(gateway.stop)
        actuator.extra_targets.append(gateway.url.removeprefix("http://"))
        reconciler = Reconciler(KubeClient(emulator.api_client()), PrometheusReader(prometheus.url), interval_s=config.interval_s)
        stop = threading.Event()
        timeline: list[tuple[float, int, int]] = []
        decisions: list[tuple[float, str]] = []
        start = time.monotonic()

        def control() -> None:
            report = reconciler.tick(time.time())
            for record in report.decisions.values():
                decisions.append((time.monotonic() - start, f"{record.current_replicas} -> {record.final}: {record.reason}"))

        def sample() -> None:
            dep = emulator.get("deployments", NAMESPACE, DEPLOYMENT) or {}
            point = (time.monotonic() - start, int(dep.get("spec", {}).get("replicas", 0)), int(dep.get("status", {}).get("readyReplicas", 0)))
            timeline.append(point)
            if on_sample:
                on_sample(*point, sum(r.inflight for r in actuator.ready()))

        threads = [every(0.3, stop, actuator.sync), every(config.interval_s, stop, control), every(1.0, stop, sample)]
        resources.callback(stop_threads, stop, threads)  # first of all, before what they use stops
        wait_until(lambda: config.min_replicas == 0 or bool(actuator.ready()))
        start = time.monotonic()
        results = replay_and_drain(gateway.url, workload, config.drain_s)
    return TwinResult(timeline, results, decisions)


def spike(duration_s: float = 60.0, base: float = 3.0, peak: float = 24.0, start_s: float = 10.0, length_s: float = 20.0, seed: int = 0) -> Workload:
    """A short spike for the closed loop (conversation-like tokens)."""
    from simulator.workloads.patterns import PatternSpec, generate_pattern

    spec = PatternSpec("spike", duration_s=duration_s, base_rate=base, peak_rate=peak, spike_start_s=start_s, spike_length_s=length_s)
    workload = generate_pattern(spec, np.random.default_rng(seed), "twin-spike")
    return Workload(workload.arrival_s, np.minimum(workload.prompt_tokens, 2000), np.minimum(workload.output_tokens, 300), workload.duration_s, workload.name)
