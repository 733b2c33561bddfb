"""Fault soak beside the local closed loop: two controller replicas keep scaling right while things break.

The twin's pieces (the API emulator, stub replicas behind a gateway, a real
Prometheus) run with two ``kis controller run`` processes electing a leader
on a Lease, reading through their informers, a learned policy from a
ConfigMap in shadow mode (the HPA baseline's decisions applied, with
``maxStepUp``/``maxStepDown``). A load spike makes them scale out and back
in while the faults of :class:`SoakConfig` hit, at set times from the start
of the load:

* a corrupt policy ConfigMap is pushed, and later the good one again;
* the API server answers 503 to every request for a burst, then 409 to
  Scale and status writes;
* Prometheus is killed (SIGKILL) and restarted on its port and TSDB;
* the Deployment is deleted (its pods orphaned, as ``--cascade=orphan``)
  and created again with the replicas it had;
* the leader is killed (SIGKILL) at its first scale-down write after
  ``kill_leader_after_s`` and restarted, as a kubelet would (once the
  other replica has taken the Lease, which the same pod name could retake).

Checks, from the emulator's record of every Scale and status write that
landed (with its writer and the Lease's holder at that moment), the
Prometheus outage and the load generator's results:

* **two leaders acting**: a write by a replica that did not hold the Lease;
* **scale-down on stale data**: a Scale write lowering the replicas while
  Prometheus was down;
* **patch to the wrong replicas**: a Scale write whose step from the
  replicas the Deployment had at that moment exceeds ``maxStepUp`` or
  ``maxStepDown`` (so it was computed from other replicas than these);
* **lost requests**: requests that did not complete with 200.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.server import run_server_in_thread
from simulator.loadgen.replay import RequestResult
from simulator.stub.app import StubConfig
from simulator.twin.apiserver import KubeEmulator, Write
from simulator.twin.replicas import ReplicaActuator, create_gateway
from simulator.twin.run import PrometheusProcess, spike
from simulator.twin.session import every, replay_and_drain, stop_threads, wait_until

NAMESPACE, DEPLOYMENT, LEASE = "default", "llm", "kis-soak"
POLICY = Path(__file__).resolve().parents[2] / "controller" / "policies" / "default"
IDENTITIES = ("controller-a", "controller-b")


@dataclass(frozen=True)
class SoakConfig:
    """Load, controller settings and fault times (seconds from the start of the load).

    :param kill_leader_after_s: the leader is killed at its first scale-down write after this time.
    :param restart_killed_after_s: it is restarted this long after, once the other replica holds the Lease
        (or three Lease durations later).
    """

    duration_s: float = 60.0
    base_rate: float = 2.0
    peak_rate: float = 24.0
    spike_start_s: float = 6.0
    spike_length_s: float = 20.0
    drain_s: float = 25.0
    interval_s: float = 2.0
    lease_s: float = 4.0
    max_replicas: int = 4
    max_step_up: int = 2
    max_step_down: int = 1
    stabilization_s: float = 6.0
    window_s: int = 10
    startup_delay_s: float = 2.0
    corrupt_policy_at_s: float = 4.0
    restore_policy_at_s: float = 40.0
    api_5xx_at_s: float = 10.0
    api_5xx_requests: int = 60
    api_409_at_s: float = 14.0
    api_409_writes: int = 4
    prometheus_kill_at_s: float = 18.0
    prometheus_down_s: float = 6.0
    delete_deployment_at_s: float = 27.0
    recreate_after_s: float = 3.0
    kill_leader_after_s: float = 31.0
    restart_killed_after_s: float = 3.0


@dataclass
class SoakResult:
    """What happened, counted (see the module docstring for the checks)."""

    config: SoakConfig
    faults: list[tuple[float, str]]
    decisions: int
    scale_writes: list[Write]
    status_writes: int
    wrong: dict[str, list[str]]
    requests: list[RequestResult]
    leaders: list[tuple[float, str | None]]
    timeline: list[tuple[float, int, int]]  # (t, desired, ready); desired -1 while the Deployment is gone
    policy_conditions: list[tuple[float, str]]  # PolicyLoaded status over time
    start_wall: float = 0.0
    non_json_log_lines: list[str] = field(default_factory=list)  # the controllers' logs must be JSON only
    writers: frozenset[str] = frozenset()  # the controller replicas that wrote a Scale or a status

    @property
    def lost(self) -> list[RequestResult]:
        return [r for r in self.requests if not r.ok]

    @property
    def wrong_count(self) -> int:
        return sum(len(v) for v in self.wrong.values())

    def summary(self) -> dict[str, Any]:
        ups = sum(1 for w in self.scale_writes if (w.after or 0) > (w.before or 0))
        return {"decisions": self.decisions, "scale_writes": len(self.scale_writes), "scale_ups": ups, "scale_downs": len(self.scale_writes) - ups,
                "status_writes": self.status_writes, "wrong_scalings": {k: len(v) for k, v in self.wrong.items()},
                "requests": len(self.requests), "lost_requests": len(self.lost),
                "leader_changes": max(0, len([h for _, h in self.leaders if h]) - 1), "faults": len(self.faults)}


class ControllerProcess:
    """``kis controller run`` against the emulator, as one pod of the controller's Deployment."""

    def __init__(self, identity: str, kubeconfig: Path, prometheus_url: str, config: SoakConfig, log_dir: Path) -> None:
        self.identity, self.log_path = identity, log_dir / f"{identity}.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.command = [sys.executable, "-m", "simulator.cli.main", "controller", "run", "--kubeconfig", str(kubeconfig),
                        "--prometheus-url", prometheus_url, "--interval", str(config.interval_s), "--lease-name", LEASE,
                        "--lease-namespace", NAMESPACE, "--lease-duration", str(config.lease_s), "--liveness-intervals", "4",
                        "--metrics-host", "127.0.0.1", "--metrics-port", str(self.port), "--workers", "2", "--resync", "30",
                        "--artifact-refresh", "2", "--log-format", "json"]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {**os.environ, "POD_NAME": self.identity, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[2])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else ():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "non_json_line", "line": line})
        return out


def policy_config_map(corrupt: bool = False) -> dict[str, Any]:
    """The shipped default policy as a ConfigMap (``policy.onnx`` as binaryData); ``corrupt``: not an ONNX file."""
    blob = b"\x00 not an onnx model \x00" if corrupt else (POLICY / "policy.onnx").read_bytes()
    return {"metadata": {"name": "policy", "namespace": NAMESPACE}, "data": {"metadata.json": (POLICY / "metadata.json").read_text()},
            "binaryData": {"policy.onnx": base64.b64encode(blob).decode()}}


def autoscaler(config: SoakConfig) -> dict[str, Any]:
    baseline = {"type": "hpa", "parameters": {"metric": "requests_per_replica", "target": 8,
                                              "behavior": {"scaleDown": {"stabilizationWindowSeconds": config.stabilization_s}}}}
    return {"metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "generation": 1}, "spec": {
        "scaleTargetRef": {"name": DEPLOYMENT}, "minReplicas": 1, "maxReplicas": config.max_replicas,
        "mode": "shadow", "shadowApplyBaseline": True,
        "policy": {"type": "learned", "artifact": {"configMap": {"name": "policy"}}, "baseline": baseline},
        "metrics": {"windowSeconds": config.window_s, "longWindowSeconds": max(config.window_s, 30)},
        "behavior": {"maxStepUp": config.max_step_up, "maxStepDown": config.max_step_down,
                     "scaleDownStabilizationSeconds": config.stabilization_s}}}


def check(result_writes: list[Write], config: SoakConfig, prometheus_down: list[tuple[float, float]], start_wall: float) -> dict[str, list[str]]:
    """The wrong scalings among the writes that landed (see the module docstring)."""
    wrong: dict[str, list[str]] = {"two_leaders_acting": [], "scale_down_on_stale_data": [], "patch_to_wrong_replicas": []}
    lease = f"{NAMESPACE}/{LEASE}"
    for w in result_writes:
        t = w.time_s - start_wall
        writer = w.writer.removeprefix("kis-controller/")
        if w.holders.get(lease) != writer:
            wrong["two_leaders_acting"].append(f"{t:.1f} s: {w.kind} write by {writer} while {w.holders.get(lease)} held the Lease")
        if w.kind != "scale" or w.before is None or w.after is None:
            continue
        if w.after < w.before and any(a <= t <= b for a, b in prometheus_down):
            wrong["scale_down_on_stale_data"].append(f"{t:.1f} s: {w.before} -> {w.after} while Prometheus was down")
        if w.after - w.before > config.max_step_up or w.before - w.after > config.max_step_down:
            wrong["patch_to_wrong_replicas"].append(f"{t:.1f} s: {w.before} -> {w.after} exceeds the step limits (+{config.max_step_up}/-{config.max_step_down})")
    return wrong


def run_soak(config: SoakConfig = SoakConfig(), *, on_event: Callable[[float, str], None] | None = None) -> SoakResult:
    """Run the soak (about ``duration_s + drain_s`` plus start-up); the result carries every count."""
    if shutil.which("prometheus") is None:
        raise RuntimeError("the soak needs the prometheus binary (Debian: apt-get install prometheus)")
    workdir = Path(tempfile.mkdtemp(prefix="kis-soak-"))
    targets = workdir / "targets.json"
    targets.write_text("[]")
    emulator = KubeEmulator(auto_ready=False)
    url = emulator.start()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "twin",
        "clusters": [{"name": "twin", "cluster": {"server": url}}],
        "contexts": [{"name": "twin", "context": {"cluster": "twin", "user": "twin"}}],
        "users": [{"name": "twin", "user": {"token": "twin"}}]}))
    emulator.put("deployments", {"metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE}, "spec": {"replicas": 1}, "status": {"readyReplicas": 0}})
    emulator.put("configmaps", policy_config_map())
    emulator.put("inferenceautoscalers", autoscaler(config))
    stub = StubConfig(startup_delay_s=config.startup_delay_s, stream_interval=16)
    actuator = ReplicaActuator(emulator, NAMESPACE, DEPLOYMENT, stub, targets, orphan_on_delete=True)
    prometheus = PrometheusProcess(workdir, targets, 1)
    gateway = run_server_in_thread(create_gateway(actuator), port=0)
    controllers = {i: ControllerProcess(i, kubeconfig, prometheus.url, config, workdir) for i in IDENTITIES}
    stop = threading.Event()
    faults: list[tuple[float, str]] = []
    leaders: list[tuple[float, str | None]] = []
    timeline: list[tuple[float, int, int]] = []
    policy_conditions: list[tuple[float, str]] = []
    prometheus_down: list[tuple[float, float]] = []
    start = {"mono": time.monotonic(), "wall": time.time()}
    killed: dict[str, float] = {}

    def now() -> float:
        return time.monotonic() - start["mono"]

    def note(what: str) -> None:
        faults.append((now(), what))
        if on_event:
            on_event(now(), what)

    def sampler_error(exc: Exception) -> None:  # a sampler must not end the soak
        faults.append((now(), f"sampler error: {type(exc).__name__}: {exc}"))

    def sample() -> None:
        dep = emulator.get("deployments", NAMESPACE, DEPLOYMENT)
        timeline.append((now(), int(dep["spec"]["replicas"]) if dep else -1, int((dep or {}).get("status", {}).get("readyReplicas", 0))))
        holder = emulator.holders().get(f"{NAMESPACE}/{LEASE}")
        if not leaders or leaders[-1][1] != holder:
            leaders.append((now(), holder))
        status = (emulator.get("inferenceautoscalers", NAMESPACE, DEPLOYMENT) or {}).get("status") or {}
        loaded = next((c for c in status.get("conditions", []) if c.get("type") == "PolicyLoaded"), None)
        if loaded is not None and (not policy_conditions or policy_conditions[-1][1] != loaded["status"]):
            policy_conditions.append((now(), loaded["status"]))

    def watch_for_scale_down() -> None:
        if killed or now() < config.kill_leader_after_s:
            return
        for w in list(emulator.writes):
            if w.kind == "scale" and (w.after or 0) < (w.before or 0) and w.time_s - start["wall"] >= config.kill_leader_after_s:
                writer = w.writer.removeprefix("kis-controller/")
                if writer in controllers:
                    controllers[writer].kill()
                    killed[writer] = now()
                    note(f"leader {writer} killed (SIGKILL) right after its scale-down {w.before} -> {w.after}")
                return

    def restart_killed() -> None:
        holder = emulator.holders().get(f"{NAMESPACE}/{LEASE}")
        for identity, at in list(killed.items()):
            # a restarted pod keeps its name, so it may take its own Lease back: wait until the other replica has it
            moved = holder not in (None, identity) or now() - at >= config.restart_killed_after_s + 3 * config.lease_s
            if at >= 0 and now() - at >= config.restart_killed_after_s and moved:
                controllers[identity].start()
                killed[identity] = -1.0
                note(f"{identity} restarted")

    schedule: list[tuple[float, Callable[[], None]]] = []

    def at(t: float, fn: Callable[[], None]) -> None:
        schedule.append((t, fn))

    def corrupt() -> None:
        emulator.put("configmaps", policy_config_map(corrupt=True))
        note("corrupt policy ConfigMap pushed")

    def restore() -> None:
        emulator.put("configmaps", policy_config_map())
        note("good policy ConfigMap pushed again")

    def api_5xx() -> None:
        emulator.inject("*", r".*", 503, times=config.api_5xx_requests)
        emulator.drop_watches()
        note(f"API server: 503 to the next {config.api_5xx_requests} requests, watches cut")

    def api_409() -> None:
        emulator.inject("PATCH", r"/scale$", 409, times=config.api_409_writes)
        emulator.inject("PATCH", r"/status$", 409, times=config.api_409_writes)
        note(f"API server: 409 to the next {config.api_409_writes} Scale and {config.api_409_writes} status writes")

    def kill_prometheus() -> None:
        prometheus.process.send_signal(signal.SIGKILL)
        prometheus.process.wait(10)
        prometheus_down.append((now(), float("inf")))
        note("Prometheus killed (SIGKILL)")

    def restart_prometheus() -> None:
        nonlocal prometheus
        prometheus = PrometheusProcess(workdir, targets, 1, port=prometheus.port)
        prometheus_down[-1] = (prometheus_down[-1][0], now())
        note("Prometheus restarted (same port and TSDB) and ready")

    deleted: dict[str, Any] = {}

    def delete_deployment() -> None:
        deleted.update(emulator.get("deployments", NAMESPACE, DEPLOYMENT) or {})
        emulator.delete("deployments", NAMESPACE, DEPLOYMENT)
        note(f"Deployment deleted (pods orphaned) at {deleted['spec']['replicas']} replicas")

    def recreate_deployment() -> None:
        replicas = int(deleted["spec"]["replicas"])
        emulator.put("deployments", {"metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE}, "spec": {"replicas": replicas},
                                     "status": {"readyReplicas": len(actuator.ready())}})
        note(f"Deployment created again with {replicas} replicas (a new object)")

    at(config.corrupt_policy_at_s, corrupt)
    at(config.restore_policy_at_s, restore)
    at(config.api_5xx_at_s, api_5xx)
    at(config.api_409_at_s, api_409)
    at(config.prometheus_kill_at_s, kill_prometheus)
    at(config.prometheus_kill_at_s + config.prometheus_down_s, restart_prometheus)
    at(config.delete_deployment_at_s, delete_deployment)
    at(config.delete_deployment_at_s + config.recreate_after_s, recreate_deployment)

    def faults_thread() -> None:
        for t, fn in sorted(schedule, key=lambda item: item[0]):
            if stop.wait(max(0.0, t - now())):
                return
            fn()

    threads: list[threading.Thread] = []
    requests: list[RequestResult] = []
    try:
        threads.append(every(0.3, stop, actuator.sync, sampler_error))
        if not wait_until(lambda: bool(actuator.ready()) and any(emulator.holders().values())):
            raise RuntimeError(f"the soak did not start: ready replicas {len(actuator.ready())}, lease holders {emulator.holders()}")
        start.update(mono=time.monotonic(), wall=time.time())
        threads += [every(0.5, stop, fn, sampler_error) for fn in (sample, restart_killed)] + [every(0.1, stop, watch_for_scale_down, sampler_error)]
        faults_runner = threading.Thread(target=faults_thread, daemon=True)
        faults_runner.start()
        threads.append(faults_runner)
        workload = spike(config.duration_s, config.base_rate, config.peak_rate, config.spike_start_s, config.spike_length_s)
        requests = replay_and_drain(gateway.url, workload, config.drain_s)
    finally:
        stop_threads(stop, threads)
        for controller in controllers.values():
            controller.stop()
        gateway.stop()
        actuator.stop()
        prometheus.stop()
        emulator.stop()
    events = [e for c in controllers.values() for e in c.log_events()]
    writes = [w for w in emulator.writes if w.time_s >= start["wall"] - 60]
    result = SoakResult(config, faults, sum(1 for e in events if e.get("event") == "decision"), [w for w in writes if w.kind == "scale"],
                        sum(1 for w in writes if w.kind == "status"), check(writes, config, prometheus_down, start["wall"]), requests,
                        leaders, timeline, policy_conditions, start["wall"])
    result.non_json_log_lines = [e["line"] for e in events if e.get("event") == "non_json_line"]
    result.writers = frozenset(w.writer for w in writes if w.writer.startswith("kis-controller/"))
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def write_soak_report(result: SoakResult, out_dir: Path) -> Path:
    """``report.md`` and ``summary.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    (out_dir / "summary.json").write_text(json.dumps({**summary, "faults": [[round(t, 1), what] for t, what in result.faults],
                                                      "wrong": result.wrong}, indent=2) + "\n")
    lines = ["# Fault soak", "",
             "Two controller replicas (leader election), informers, a learned policy from a ConfigMap in shadow mode with the HPA",
             "baseline applied, stub replicas, a real Prometheus, a load spike; the faults below. Command: `kis twin soak`.", "",
             "| figure | value |", "|---|---:|"]
    lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in summary.items() if not isinstance(value, dict)]
    lines += [f"| wrong scalings: {kind.replace('_', ' ')} | {n} |" for kind, n in summary["wrong_scalings"].items()]
    lines += ["", "## Faults and what followed", ""]
    lines += [f"- {t:.1f} s: {what}" for t, what in result.faults]
    lines += ["", "## Scale writes that landed", ""]
    lines += [f"- {w.time_s - result.start_wall:.1f} s: {w.before} -> {w.after} by {w.writer.removeprefix('kis-controller/')}" for w in result.scale_writes]
    lines += ["", "## Lease holders", ""] + [f"- {t:.1f} s: {holder}" for t, holder in result.leaders]
    lines += ["", "## PolicyLoaded", ""] + [f"- {t:.1f} s: {status}" for t, status in result.policy_conditions]
    lines += ["", "## Lost requests", ""] + ([f"- {r.scheduled_s:.1f} s: status {r.status} {r.error}".rstrip() for r in result.lost] or ["none"])
    wrong = [f"- {kind}: {text}" for kind, items in result.wrong.items() for text in items]
    lines += ["", "## Wrong scalings", ""] + (wrong or ["none"])
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

