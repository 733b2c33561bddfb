"""Objects and fakes shared by the controller tests (the API emulator is in tests/kube_emulator.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.kube import Backoff, KubeClient
from controller.loop import Reconciler
from controller.prometheus import MetricsUnavailable
from controller.telemetry import ControllerMetrics
from tests.kube_emulator import KubeEmulator

NOW = 1_800_000_000.0
NS = "serving"
#: 60 running + 20 waiting = 80 requests in flight for the target.
LOADED = {"requests_running": 60.0, "requests_waiting": 20.0, "request_rate": 10.0, "prompt_token_rate": 9000.0, "generation_token_rate": 1500.0}


class FakeReader:
    """Stands in for PrometheusReader: the same signals for every target (or per target key), or unreachable."""

    def __init__(self, snapshot: dict[str, float] | None = None, fail: bool = False, per_key: dict[str, dict[str, float]] | None = None) -> None:
        self.snapshot, self.fail, self.per_key = dict(LOADED if snapshot is None else snapshot), fail, per_key or {}
        self.calls: list[list[str]] = []

    def read(self, targets: Any, *, time_s: float | None = None) -> dict[str, dict[str, float]]:
        self.calls.append([t.key for t in targets])
        if self.fail:
            raise MetricsUnavailable("http://prometheus:9090", "connection refused")
        return {t.key: dict(self.per_key.get(t.key, self.snapshot)) for t in targets}


def autoscaler(name: str, target: str, policy: dict[str, Any] | None = None, namespace: str = NS, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling.kis-s.dev/v1alpha1", "kind": "InferenceAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "minReplicas": 1, "maxReplicas": 8,
                     "policy": policy or {"type": "hpa", "parameters": {"target": 10}}, **spec}}


def deployment(name: str, replicas: int = 2, namespace: str = NS) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "server", "image": "kis-s:0.1.0"}]}}}}


def kube_client(kube: KubeEmulator, attempts: int = 4, sleeps: list[float] | None = None, timeout_s: float = 5.0) -> KubeClient:
    """A KubeClient on the emulator that records its backoff sleeps instead of sleeping."""
    record = sleeps if sleeps is not None else []
    return KubeClient(kube.api_client(), backoff=Backoff(attempts=attempts, base_s=0.2, max_s=3.0), rng=np.random.default_rng(7),
                      sleep=record.append, timeout_s=timeout_s)


def reconciler(kube: KubeEmulator, reader: Any = None, sleeps: list[float] | None = None, **kwargs: Any) -> Reconciler:
    return Reconciler(kube_client(kube, sleeps=sleeps), reader or FakeReader(), metrics=ControllerMetrics(), **kwargs)


def condition(kube: KubeEmulator, name: str, kind: str, namespace: str = NS) -> dict[str, Any]:
    status = (kube.get("inferenceautoscalers", namespace, name) or {}).get("status") or {}
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def replicas(kube: KubeEmulator, name: str, namespace: str = NS) -> int:
    return int(kube.get("deployments", namespace, name)["spec"]["replicas"])  # type: ignore[index]


def scale_writes(kube: KubeEmulator) -> list[tuple[str, str]]:
    return kube.writes(r"/deployments/[^/]+/scale$")
