"""One reconcile tick for 1, 100 and 1,000 autoscalers, Prometheus latency excluded, and the controller's memory.

    .venv/bin/python bench/controller_tick.py [--out bench/results/controller_tick.md] [--no-http]

Prometheus is a fake reader that answers instantly (its batched read is
measured on its own in bench/prometheus_reader.py). Two Kubernetes back ends:

* in-process fake with KubeClient's methods: the controller's own cost
  (parsing, policy and guardrails, the decision records, status building),
  which is the "decision part" with the target of 1,000 autoscalers in at
  most 1 s. A fake, not the emulator, because the emulator's own request
  handling would be most of what is measured;
* the API emulator of the closed loop (simulator/twin/apiserver.py) through
  the official client over loopback HTTP: adds one GET per target (one LIST
  of the namespace's Deployments from 10 targets in a namespace), a status
  PATCH when the status changed, and a Scale PATCH and an Event when it
  scales: the traffic a real API server would see, minus the network and
  the server (the emulator's cost is in these numbers).

Memory: resident set size (``/proc/self/statm``) of this process after the
imports and after building the state of 1,000 autoscalers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.kube import KubeClient, ScaleState, TargetState  # noqa: E402
from controller.logs import configure_logging  # noqa: E402
from controller.loop import Reconciler  # noqa: E402
from controller.telemetry import ControllerMetrics  # noqa: E402

SNAPSHOT = {"requests_running": 40.0, "requests_waiting": 5.0, "request_rate": 8.0, "prompt_token_rate": 8000.0, "generation_token_rate": 1200.0,
            "kv_cache_usage": 0.5, "gpu_utilization": 70.0, "ttft_p95": 0.3, "tpot_p95": 0.03}
POLICIES = {"hpa": {"type": "hpa", "parameters": {"target": 10}},
            "learned": {"type": "learned", "artifact": {"path": str(REPO / "controller/policies/default")}}}


class FakeReader:
    def read(self, targets: Any, *, time_s: float | None = None) -> dict[str, dict[str, float]]:
        return {t.key: dict(SNAPSHOT) for t in targets}


def autoscaler(i: int, policy: str) -> dict[str, Any]:
    return {"apiVersion": "autoscaling.kis-s.dev/v1alpha1", "kind": "InferenceAutoscaler",
            "metadata": {"name": f"a{i}", "namespace": "serving", "uid": f"u{i}", "generation": 1},
            "spec": {"scaleTargetRef": {"name": f"d{i}"}, "maxReplicas": 16, "policy": POLICIES[policy]}}


class MemoryKube:
    """KubeClient's surface in memory; status patches are kept as the API server would (merge)."""

    def __init__(self, n: int, policy: str) -> None:
        self.objects = [autoscaler(i, policy) for i in range(n)]
        self.by_name = {o["metadata"]["name"]: o for o in self.objects}
        self.replicas = {f"d{i}": 3 for i in range(n)}
        self.writes = 0

    def list_autoscalers(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.objects

    def read_target(self, namespace: str, name: str) -> TargetState:
        return TargetState(self.replicas[name], self.replicas[name], "1")

    def list_targets(self, namespace: str) -> dict[str, TargetState]:
        return {name: TargetState(count, count, "1") for name, count in self.replicas.items()}

    def read_scale(self, namespace: str, name: str) -> ScaleState:
        return ScaleState(self.replicas[name], "1")

    def patch_scale(self, namespace: str, name: str, replicas: int, resource_version: str | None = None) -> None:
        self.replicas[name] = replicas
        self.writes += 1

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.by_name[name]["status"] = {**self.by_name[name].get("status", {}), **status}
        self.writes += 1

    def emit_event(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def state_memory(policy: str) -> tuple[float, float]:
    """(Python heap, resident set) growth, MiB, from one tick that builds the state of 1,000 autoscalers."""
    kube = MemoryKube(1000, policy)
    reconciler = Reconciler(kube, FakeReader(), metrics=ControllerMetrics())  # type: ignore[arg-type]
    before = rss_mb()
    tracemalloc.start()
    reconciler.tick(1e9)
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return heap / 2**20, rss_mb() - before


def timed(reconciler: Reconciler, now: float) -> tuple[float, Any]:
    start = time.perf_counter()
    report = reconciler.tick(now)
    return time.perf_counter() - start, report


def in_memory(n: int, policy: str) -> tuple[float, float, float]:
    """First tick, then (after one tick in which the decisions settle) the fastest of three steady ticks and their writes."""
    kube = MemoryKube(n, policy)
    rec = Reconciler(kube, FakeReader(), metrics=ControllerMetrics())  # type: ignore[arg-type]
    first, _ = timed(rec, 1e9)
    timed(rec, 1e9 + 15)
    kube.writes = 0
    steady = min(timed(rec, 1e9 + 15 * k)[0] for k in range(2, 5))
    return first, steady, kube.writes / 3


def over_http(n: int) -> tuple[float, float, int]:
    import numpy as np

    from controller.kube import Backoff
    from simulator.twin.apiserver import KubeEmulator

    emulator = KubeEmulator()
    emulator.start()
    try:
        labels = {"app": "x"}
        for i in range(n):
            emulator.put("deployments", {"metadata": {"name": f"d{i}", "namespace": "serving"},
                                         "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                                                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "x"}]}}}})
            emulator.put("inferenceautoscalers", autoscaler(i, "hpa"))
        rec = Reconciler(KubeClient(emulator.api_client(), backoff=Backoff(attempts=1), rng=np.random.default_rng(0)), FakeReader(),
                         metrics=ControllerMetrics())
        first, _ = timed(rec, 1e9)
        timed(rec, 1e9 + 15)  # the decisions settle (NoChange after the scale-up: one status write each)
        steady, report = timed(rec, 1e9 + 30)
        return first, steady, report.status_writes + len(report.patched)
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/controller_tick.md")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP emulator runs")
    args = parser.parse_args()
    configure_logging("console", "warning")  # a log line per scaled target would be most of the time measured
    base_rss = rss_mb()
    memory = {policy: state_memory(policy) for policy in ("hpa", "learned")}  # first, while the heap is fresh
    rows = []
    for policy in ("hpa", "learned"):
        for n in (1, 100, 1000):
            first, steady, writes = in_memory(n, policy)
            rows.append((policy, n, first, steady, writes))
            print(f"in-memory {policy} n={n}: first {first * 1000:.1f} ms, steady {steady * 1000:.1f} ms, writes per steady tick {writes:g}", flush=True)
    http_rows = []
    if not args.no_http:
        for n in (1, 100, 1000):
            first, steady, writes = over_http(n)
            http_rows.append((n, first, steady, writes))
            print(f"http n={n}: first {first * 1000:.0f} ms, steady {steady * 1000:.0f} ms", flush=True)
    shutil.rmtree("/tmp/kis-artifacts", ignore_errors=True)

    lines = [
        "# Controller tick", "",
        f"- date: {dt.date.today().isoformat()}; host: {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared with other work; one process",
        "- command: `.venv/bin/python bench/controller_tick.py`",
        "- Prometheus: a fake reader answering instantly (the batched read itself: bench/results/prometheus_reader.md)",
        "- every autoscaler: 3 replicas, 45 requests in flight, maxReplicas 16; `learned` is the shipped default policy (ONNX, onnxruntime)", "",
        "## Decision part (in-process Kubernetes fake)", "",
        "The loop's own cost: parse, policy, guardrails, decision records, status. First tick also builds every autoscaler's",
        "policy (and, for `learned`, loads the artifact once for all); later ticks reuse them. The steady tick is measured after one tick in which the decisions settle. Target: 1,000 in at most 1 s.", "",
        "| policy | autoscalers | first tick | steady tick (min of 3) | API writes per steady tick |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {p} | {n:,} | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {w:g} |" for p, n, a, b, w in rows]
    if http_rows:
        lines += ["", "## Over HTTP (the closed loop's API emulator, official client, loopback)", "",
                  "| autoscalers | first tick (reads; then per target: Scale PATCH, Event, status PATCH) | steady tick (reads only: a GET per target, or one LIST from 10 targets) | writes in the steady tick |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {n:,} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {w} |" for n, a, b, w in http_rows]
    lines += ["", "## Memory", "",
              f"- resident set after the imports: {base_rss:.0f} MiB",
              f"- 1,000 `hpa` autoscalers after their first tick: Python heap +{memory['hpa'][0]:.1f} MiB, resident set +{memory['hpa'][1]:.1f} MiB",
              f"- 1,000 `learned` autoscalers after their first tick (one shared onnxruntime session): Python heap +{memory['learned'][0]:.1f} MiB, "
              f"resident set +{memory['learned'][1]:.1f} MiB", ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
