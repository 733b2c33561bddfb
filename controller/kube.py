"""Kubernetes I/O of the controller, through the official ``kubernetes`` client.

Error taxonomy (kopf-style): 404 is :class:`TargetMissing` (permanent for
this tick); 409 on a scale write re-reads the Scale and retries with its new
resourceVersion, a bounded number of times; 5xx, 429 and connection errors or
timeouts are temporary and retried with exponential backoff and full jitter
(:class:`Backoff`, a small separate throttler drawing from an explicit rng),
a bounded number of attempts; anything else (400, 401, 403, 422, ...) is
permanent and not retried. A :class:`KubeError` says which (``temporary``)
and carries the error-metric label (``kind``).

A target is read once per tick: the Deployment's ``spec.replicas`` and
``metadata.resourceVersion`` are its Scale's (the scale subresource is a view
of the same object), and its status gives the ready replicas. Writes go
through the ``scale`` subresource, conditional on that resourceVersion.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from controller.pipeline_spec import PIPELINE_KIND, PIPELINE_PLURAL
from controller.spec import GROUP, KIND, PLURAL, VERSION

T = TypeVar("T")


class KubeError(RuntimeError):
    """A Kubernetes call failed; ``kind`` is the error-metric label."""

    def __init__(self, message: str, kind: str = "kubernetes", status: int | None = None, temporary: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.temporary = temporary


class TargetMissing(KubeError):
    """The object (a scale target, a ConfigMap, a Lease) does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "target_missing", 404)


@dataclass(frozen=True)
class Backoff:
    """Retry schedule for temporary errors.

    :param attempts: tries in all, the first included (1: no retry).
    :param base_s: cap of the first delay, seconds; doubles per retry.
    :param max_s: cap of any delay, seconds.

    Full jitter: retry ``k`` (from 0) waits ``uniform(0, min(max_s, base_s * 2**k))``.
    """

    attempts: int = 4
    base_s: float = 0.2
    max_s: float = 3.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Backoff.attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("Backoff delays must be >= 0")

    def delay(self, attempt: int, rng: np.random.Generator) -> float:
        return float(rng.uniform(0.0, min(self.max_s, self.base_s * 2**attempt)))


TEMPORARY_STATUS = frozenset({0, 429, 500, 502, 503, 504})


def _temporary(exc: Exception) -> bool:
    """5xx, 429, and transport failures (refused connections, timeouts) may pass; the rest will not."""
    if isinstance(exc, ApiException):
        return exc.status in TEMPORARY_STATUS
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


@dataclass(frozen=True)
class ScaleState:
    """A target's Scale: ``spec.replicas`` and the resourceVersion a write must match."""

    replicas: int
    resource_version: str


@dataclass(frozen=True)
class TargetState:
    """What one read of a Deployment tells: desired replicas (its Scale), ready replicas, resourceVersion."""

    replicas: int
    ready: int
    resource_version: str

    @property
    def starting(self) -> int:
        """Replicas asked for but not ready yet (scheduling, pulling, loading the model)."""
        return max(0, self.replicas - self.ready)


def target_state(deployment: dict[str, Any]) -> TargetState:
    """A Deployment as JSON -> its :class:`TargetState`."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])  # the API server defaults it to 1
    return TargetState(replicas, int(status.get("readyReplicas") or 0), str(deployment["metadata"].get("resourceVersion", "")))


@dataclass(frozen=True)
class ConfigMapFiles:
    resource_version: str
    files: dict[str, bytes]


class KubeClient:
    """The calls the reconcile loop makes, with retries."""

    def __init__(self, api_client: client.ApiClient, *, backoff: Backoff = Backoff(), rng: np.random.Generator | None = None,
                 sleep: Callable[[float], None] = time.sleep, timeout_s: float = 10.0) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.backoff = backoff
        self.rng = rng or np.random.default_rng()
        self.sleep = sleep
        self.timeout_s = timeout_s
        self.retries = 0

    def _write(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """A write whose answer is not needed: read raw and dropped (the official client's models cost more than the request)."""
        self._call(what, fn, *args, _preload_content=False).data

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", self.timeout_s)
        for attempt in range(self.backoff.attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # classified below
                if isinstance(exc, ApiException) and exc.status == 404:
                    raise TargetMissing(f"{what}: not found") from exc
                temporary = _temporary(exc)
                if not temporary or attempt == self.backoff.attempts - 1:
                    status = exc.status if isinstance(exc, ApiException) else None
                    kind = "conflict" if status == 409 else "kubernetes"
                    tries = f" after {attempt + 1} attempts" if temporary and attempt else ""
                    raise KubeError(f"{what}: {getattr(exc, 'reason', None) or exc}{tries}", kind, status, temporary) from exc
                self.retries += 1
                self.sleep(self.backoff.delay(attempt, self.rng))
        raise AssertionError("unreachable")

    # --------------------------------------------------------- autoscalers
    def list_autoscalers(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            result = self._call("list inferenceautoscalers", self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        else:
            result = self._call("list inferenceautoscalers", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        return list(result.get("items", []))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._write(f"patch status of {namespace}/{name}", self.custom.patch_namespaced_custom_object_status,
                    GROUP, VERSION, namespace, PLURAL, name, {"status": status})

    # ----------------------------------------------------------- pipelines
    def list_pipelines(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """InferencePipelineAutoscalers (:class:`TargetMissing` when their CRD is not installed)."""
        what = f"list {PIPELINE_PLURAL}"
        if namespace:
            result = self._call(what, self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PIPELINE_PLURAL)
        else:
            result = self._call(what, self.custom.list_cluster_custom_object, GROUP, VERSION, PIPELINE_PLURAL)
        return [{**item, "kind": PIPELINE_KIND} for item in result.get("items", [])]

    def patch_pipeline_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._write(f"patch status of pipeline {namespace}/{name}", self.custom.patch_namespaced_custom_object_status,
                    GROUP, VERSION, namespace, PIPELINE_PLURAL, name, {"status": status})

    # --------------------------------------------------------- deployments
    def read_scale(self, namespace: str, name: str) -> ScaleState:
        scale = self._call(f"read scale of deployment {namespace}/{name}", self.apps.read_namespaced_deployment_scale, name, namespace)
        return ScaleState(int(scale.spec.replicas or 0), str(scale.metadata.resource_version))

    def read_target(self, namespace: str, name: str) -> TargetState:
        """One GET of the Deployment: its Scale's replicas and resourceVersion, and its ready replicas."""
        dep = self._call(f"read deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)
        replicas = 1 if dep.spec.replicas is None else int(dep.spec.replicas)  # the API server defaults it to 1
        return TargetState(replicas, int((dep.status and dep.status.ready_replicas) or 0), str(dep.metadata.resource_version))

    def list_targets(self, namespace: str) -> dict[str, TargetState]:
        """Every Deployment of ``namespace`` by name, in one LIST.

        The items are read from the raw JSON: the official client's model objects would cost about a
        millisecond per Deployment, and only three fields are needed.
        """
        response = self._call(f"list deployments in {namespace}", self.apps.list_namespaced_deployment, namespace, _preload_content=False)
        try:
            items = json.loads(response.data).get("items") or []
            return {item["metadata"]["name"]: target_state(item) for item in items}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KubeError(f"list deployments in {namespace}: unreadable answer ({type(exc).__name__}: {exc})") from exc

    def patch_scale(self, namespace: str, name: str, replicas: int, resource_version: str | None = None, conflicts: int = 3,
                    expected_replicas: int | None = None) -> None:
        """Set ``spec.replicas`` through the scale subresource, conditional on ``resource_version``.

        On 409 (someone wrote in between) re-read the Scale and retry with its resourceVersion, at most ``conflicts`` times;
        but when ``expected_replicas`` (the count the decision started from) is given and the Scale now holds another count,
        give up with a ``conflict`` error: the decision was made on replicas that are no longer there.
        """
        for attempt in range(conflicts + 1):
            body: dict[str, Any] = {"spec": {"replicas": replicas}}
            if resource_version:
                body["metadata"] = {"resourceVersion": resource_version}
            try:
                self._write(f"patch scale of deployment {namespace}/{name}", self.apps.patch_namespaced_deployment_scale, name, namespace, body)
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
                if attempt == conflicts:
                    break
                self.retries += 1
                scale = self.read_scale(namespace, name)
                if expected_replicas is not None and scale.replicas != expected_replicas:
                    raise KubeError(f"patch scale of deployment {namespace}/{name}: replicas changed to {scale.replicas} meanwhile "
                                    f"(decided from {expected_replicas}); deciding again next tick", "conflict", 409) from exc
                resource_version = scale.resource_version
        raise KubeError(f"patch scale of deployment {namespace}/{name}: still conflicting after {conflicts} re-reads", "conflict", 409)

    # -------------------------------------------------------------- events
    def emit_event(self, namespace: str, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal", now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.timezone.utc)
        meta = involved.get("metadata", {})
        stamp = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {  # a core/v1 Event as JSON (the client's model classes would cost more than the request)
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'kis')}.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": involved.get("kind") or KIND, "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid")},
            "reason": reason, "message": message[:1024], "type": type_, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": "kis-controller"}, "reportingComponent": "kis-controller",
        }
        self._write(f"create event for {namespace}/{meta.get('name')}", self.core.create_namespaced_event, namespace, body)

    # ---------------------------------------------------------- configmaps
    def read_config_map(self, namespace: str, name: str) -> ConfigMapFiles:
        """A ConfigMap's ``data`` and ``binaryData`` as files, with its resourceVersion."""
        cm = self._call(f"read configmap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace)
        files = {k: v.encode() for k, v in (cm.data or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return ConfigMapFiles(str(cm.metadata.resource_version), files)

    # -------------------------------------------------------------- leases
    def read_lease(self, namespace: str, name: str) -> client.V1Lease | None:
        try:
            return self._call(f"read lease {namespace}/{name}", self.coordination.read_namespaced_lease, name, namespace)
        except TargetMissing:
            return None

    def create_lease(self, namespace: str, lease: client.V1Lease) -> client.V1Lease:
        return self._call(f"create lease {namespace}", self.coordination.create_namespaced_lease, namespace, lease)

    def replace_lease(self, namespace: str, name: str, lease: client.V1Lease) -> client.V1Lease:
        return self._call(f"replace lease {namespace}/{name}", self.coordination.replace_namespaced_lease, name, namespace, lease)
