"""A small Kubernetes API emulator, spoken to by the official ``kubernetes`` client.

It serves just the REST paths KIS-S uses, with the semantics the controller
depends on (which a generic mock lacks): ``deployments/{name}/scale`` answers
an ``autoscaling/v1`` Scale and a patch changes ``spec.replicas``;
``resourceVersion`` grows on every write and a stale one answers 409; PUT
replaces Leases; ``status`` is a subresource; merge patches. Deployments get
``readyReplicas = replicas`` at once unless ``auto_ready`` is off (then an
actuator sets the status). Faults can be injected per method and path.
LISTs answer the current resourceVersion and, with ``?watch=true``, stream
the changes after the one given (:class:`WatchLog`; 410 Expired for a
compacted one), as the informers of the controller need. Every Scale and
status write that lands is kept in :attr:`KubeEmulator.writes` with the
writer (its User-Agent) and the Leases' holders at that moment, for the
fault soak's checks.

Runs in a thread on loopback (:meth:`KubeEmulator.start`).
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import datetime as dt
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

CR = "/apis/autoscaling.kis-s.dev/v1alpha1"


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch of ``target``, in place; returns it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def expired_event(resource_version: str, oldest: int) -> bytes:
    """The ERROR event (a JSON line) a Kubernetes API server streams for a watch from a compacted resourceVersion."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
              "message": f"too old resource version: {resource_version} ({oldest})"}
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"


class WatchLog:
    """The last ``capacity`` change events by resourceVersion, for ``?watch=true`` (as the API server's watch cache).

    Each event is kept as the JSON line a watch streams, serialised once when
    recorded (a snapshot: later writes to the object do not change it).
    :meth:`since` answers the lines after a resourceVersion, or ``None`` when
    some of them were dropped (the watcher then gets 410 Gone and must list
    again). :meth:`compact` drops everything (tests use it to force a 410).
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._versions: list[int] = []
        self._events: list[tuple[str, str | None, bytes]] = []  # (kind, namespace, JSON line)
        self._dropped_through = 0

    def record(self, resource_version: int, kind: str, type_: str, obj: dict[str, Any]) -> None:
        """``obj`` changed at ``resource_version``: ``ADDED``, ``MODIFIED`` or ``DELETED``."""
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
        self._versions.append(resource_version)
        self._events.append((kind, (obj.get("metadata") or {}).get("namespace"), line))
        if len(self._events) > self.capacity:
            drop = len(self._events) - self.capacity
            self._dropped_through = self._versions[drop - 1]
            del self._versions[:drop], self._events[:drop]

    def since(self, kind: str, namespace: str | None, resource_version: int) -> list[bytes] | None:
        """Event lines of ``kind`` (in ``namespace``, or all) newer than ``resource_version``; ``None`` if some are gone."""
        if resource_version < self._dropped_through:
            return None
        start = bisect.bisect_right(self._versions, resource_version)
        return [line for k, ns, line in self._events[start:] if k == kind and (namespace is None or ns == namespace)]

    def compact(self, through: int | None = None) -> None:
        """Forget every event: a watch from a resourceVersion older than ``through`` (default: the last event's) gets 410 Gone."""
        last = self._versions[-1] if self._versions else self._dropped_through
        self._dropped_through = max(self._dropped_through, last if through is None else through)
        self._versions.clear()
        self._events.clear()

    @property
    def oldest(self) -> int:
        """The resourceVersion from which watches still work."""
        return self._dropped_through


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}, status_code=code)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int


@dataclass(frozen=True)
class Write:
    """A Scale or status write that landed: when, by whom, on what, and who held each Lease then."""

    time_s: float
    writer: str
    kind: str  # "scale" or "status"
    namespace: str
    name: str
    before: int | None  # Scale: spec.replicas before and after
    after: int | None
    holders: dict[str, str | None]  # "namespace/name" of each Lease -> its holderIdentity


WATCHED = ("deployments", "inferenceautoscalers", "inferencepipelineautoscalers", "configmaps")

class KubeEmulator:
    """Objects by (kind, namespace, name); ``requests`` logs (method, path) for assertions."""

    def __init__(self, *, auto_ready: bool = True) -> None:
        self.auto_ready = auto_ready
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.writes: list[Write] = []
        self.watch_log = WatchLog()
        self._version = 0
        self._cut = 0  # drop_watches() generation
        self._lock = threading.RLock()
        self.app = self._build()
        self.handle: Any = None

    # ------------------------------------------------------------ helpers
    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", f"uid-{self._version}")
        meta.setdefault("creationTimestamp", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta.setdefault("generation", 1)
        return obj

    def _changed(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        """Tell the watches (call with the lock held, after :meth:`_bump`)."""
        if kind in WATCHED:
            self.watch_log.record(self._version, kind, type_, obj)

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (test setup, or someone else's write)."""
        with self._lock:
            obj = copy.deepcopy(obj)
            key = (kind, obj["metadata"].get("namespace", "default"), obj["metadata"]["name"])
            obj["metadata"]["namespace"] = key[1]
            if kind == "deployments":
                self._sync_deployment(obj)
            added = key not in self.objects
            self.objects[key] = self._bump(obj)
            self._changed(kind, "ADDED" if added else "MODIFIED", obj)
            return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is not None:
                self._changed(kind, "DELETED", self._bump(copy.deepcopy(obj)))

    def set_ready(self, namespace: str, name: str, ready: int) -> None:
        with self._lock:
            obj = self.objects[("deployments", namespace, name)]
            obj.setdefault("status", {})["readyReplicas"] = ready
            self._changed("deployments", "MODIFIED", self._bump(obj))

    def inject(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests matching answer ``status`` (``method`` ``*``: any; a watch is ``WATCH``)."""
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times))

    def drop_watches(self) -> None:
        """End every open watch stream (as a restarting API server does)."""
        with self._lock:
            self._cut += 1

    def holders(self) -> dict[str, str | None]:
        """``namespace/name`` of each Lease -> its holder."""
        with self._lock:
            return {f"{ns}/{name}": (o.get("spec") or {}).get("holderIdentity") for (k, ns, name), o in self.objects.items() if k == "leases"}

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (k, ns, _), o in self.objects.items() if k == "events" and (namespace is None or ns == namespace)]

    def _sync_deployment(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        name = obj["metadata"]["name"]
        spec.setdefault("selector", {"matchLabels": {"app": name}})
        spec.setdefault("template", {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "server", "image": "kis-s:0.1.0"}]}})
        replicas = spec.setdefault("replicas", 1)
        status = obj.setdefault("status", {})
        status["replicas"] = replicas
        if self.auto_ready:
            status["readyReplicas"] = replicas

    def _scale(self, dep: dict[str, Any]) -> dict[str, Any]:
        meta = dep["metadata"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "resourceVersion": meta["resourceVersion"], "uid": meta["uid"]},
                "spec": {"replicas": dep["spec"]["replicas"]},
                "status": {"replicas": dep["status"].get("replicas", 0), "selector": f"app={meta['name']}"}}

    def _list(self, kind: str, namespace: str | None, api_version: str, list_kind: str) -> dict[str, Any]:
        items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == kind and (namespace is None or ns == namespace)]
        return {"apiVersion": api_version, "kind": list_kind, "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _list_or_watch(self, request: Request, kind: str, namespace: str | None, api_version: str, list_kind: str) -> Any:
        if request.query_params.get("watch") not in ("true", "1"):
            with self._lock:
                return self._list(kind, namespace, api_version, list_kind)
        try:
            since = int(request.query_params.get("resourceVersion") or self._version)
            timeout_s = float(request.query_params.get("timeoutSeconds") or 1800)
        except ValueError:
            return _status(400, "BadRequest", "resourceVersion and timeoutSeconds must be numbers")
        return StreamingResponse(self._stream(kind, namespace, since, timeout_s), media_type="application/json")

    async def _stream(self, kind: str, namespace: str | None, since: int, timeout_s: float) -> AsyncIterator[bytes]:
        """The watch: events after ``since``, polled from the :class:`WatchLog` until ``timeout_s`` or :meth:`drop_watches`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            cut = self._cut
        while True:
            with self._lock:
                lines = self.watch_log.since(kind, namespace, since)
                oldest, since, dropped = self.watch_log.oldest, self._version, self._cut != cut
            if lines is None:
                yield expired_event(str(since), oldest)
                return
            if lines:
                yield b"".join(lines)
            if dropped or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)

    def _audit(self, request: Request, kind: str, namespace: str, name: str, before: int | None = None, after: int | None = None) -> None:
        self.writes.append(Write(time.time(), request.headers.get("user-agent", ""), kind, namespace, name, before, after, self.holders()))

    # -------------------------------------------------------------- routes
    def _build(self) -> FastAPI:
        app = FastAPI()
        emu = self

        @app.middleware("http")
        async def faults(request: Request, call_next):
            method = "WATCH" if request.query_params.get("watch") in ("true", "1") else request.method
            with emu._lock:
                emu.requests.append((method, request.url.path))
                for fault in emu.faults:
                    if fault.times > 0 and fault.method in (method, "*") and fault.pattern.search(request.url.path):
                        fault.times -= 1
                        return _status(fault.status, "Injected", f"injected fault {fault.status}")
            return await call_next(request)

        def conflict(current: dict[str, Any], body: dict[str, Any]) -> JSONResponse | None:
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", f"the object has been modified (resourceVersion {wanted} != {current['metadata']['resourceVersion']})")
            return None

        def missing(kind: str, name: str) -> JSONResponse:
            return _status(404, "NotFound", f'{kind} "{name}" not found')

        @app.get(f"{CR}/inferenceautoscalers")
        def list_all_autoscalers(request: Request):
            return emu._list_or_watch(request, "inferenceautoscalers", None, "autoscaling.kis-s.dev/v1alpha1", "InferenceAutoscalerList")

        @app.get(CR + "/namespaces/{ns}/inferenceautoscalers")
        def list_autoscalers(ns: str, request: Request):
            return emu._list_or_watch(request, "inferenceautoscalers", ns, "autoscaling.kis-s.dev/v1alpha1", "InferenceAutoscalerList")

        @app.get(f"{CR}/inferencepipelineautoscalers")
        def list_all_pipelines(request: Request):
            return emu._list_or_watch(request, "inferencepipelineautoscalers", None, "autoscaling.kis-s.dev/v1alpha1", "InferencePipelineAutoscalerList")

        @app.get(CR + "/namespaces/{ns}/inferencepipelineautoscalers")
        def list_pipelines(ns: str, request: Request):
            return emu._list_or_watch(request, "inferencepipelineautoscalers", ns, "autoscaling.kis-s.dev/v1alpha1", "InferencePipelineAutoscalerList")

        @app.patch(CR + "/namespaces/{ns}/{plural}/{name}/status")
        async def patch_autoscaler_status(ns: str, plural: str, name: str, request: Request):
            if plural not in ("inferenceautoscalers", "inferencepipelineautoscalers"):
                return missing(plural, name)
            body = await request.json()
            with emu._lock:
                obj = emu.objects.get((plural, ns, name))
                if obj is None:
                    return missing(plural, name)
                if (c := conflict(obj, body)) is not None:
                    return c
                merge_patch(obj.setdefault("status", {}), body.get("status") or {})
                emu._changed(plural, "MODIFIED", emu._bump(obj))
                emu._audit(request, "status", ns, name)
                return copy.deepcopy(obj)

        @app.get("/apis/apps/v1/deployments")
        def list_all_deployments(request: Request):
            return emu._list_or_watch(request, "deployments", None, "apps/v1", "DeploymentList")

        @app.get("/apis/apps/v1/namespaces/{ns}/deployments")
        def list_deployments(ns: str, request: Request):
            return emu._list_or_watch(request, "deployments", ns, "apps/v1", "DeploymentList")

        @app.get("/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        def get_deployment(ns: str, name: str):
            with emu._lock:
                obj = emu.objects.get(("deployments", ns, name))
                return copy.deepcopy(obj) if obj else missing("deployments", name)

        @app.get("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale")
        def get_scale(ns: str, name: str):
            with emu._lock:
                obj = emu.objects.get(("deployments", ns, name))
                return emu._scale(obj) if obj else missing("deployments", name)

        @app.api_route("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", methods=["PATCH", "PUT"])
        async def patch_scale(ns: str, name: str, request: Request):
            body = await request.json()
            with emu._lock:
                obj = emu.objects.get(("deployments", ns, name))
                if obj is None:
                    return missing("deployments", name)
                if (c := conflict(obj, body)) is not None:
                    return c
                replicas = (body.get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    return _status(422, "Invalid", "spec.replicas must be a non-negative integer")
                before = obj["spec"]["replicas"]
                obj["spec"]["replicas"] = replicas
                emu._sync_deployment(obj)
                emu._changed("deployments", "MODIFIED", emu._bump(obj))
                emu._audit(request, "scale", ns, name, before, replicas)
                return emu._scale(obj)

        @app.post("/api/v1/namespaces/{ns}/events")
        async def create_event(ns: str, request: Request):
            body = await request.json()
            body.setdefault("metadata", {})["namespace"] = ns
            body["metadata"].setdefault("name", f"event-{emu._version + 1}")
            with emu._lock:
                key = ("events", ns, body["metadata"]["name"])
                emu.objects[key] = emu._bump(body)
                return JSONResponse(copy.deepcopy(emu.objects[key]), status_code=201)

        @app.get("/api/v1/namespaces/{ns}/configmaps/{name}")
        def get_config_map(ns: str, name: str):
            with emu._lock:
                obj = emu.objects.get(("configmaps", ns, name))
                return copy.deepcopy(obj) if obj else missing("configmaps", name)

        @app.get("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
        def get_lease(ns: str, name: str):
            with emu._lock:
                obj = emu.objects.get(("leases", ns, name))
                return copy.deepcopy(obj) if obj else missing("leases", name)

        @app.post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases")
        async def create_lease(ns: str, request: Request):
            body = await request.json()
            with emu._lock:
                key = ("leases", ns, body["metadata"]["name"])
                if key in emu.objects:
                    return _status(409, "AlreadyExists", f'leases "{key[2]}" already exists')
                body["metadata"]["namespace"] = ns
                emu.objects[key] = emu._bump(body)
                return JSONResponse(copy.deepcopy(emu.objects[key]), status_code=201)

        @app.put("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
        async def replace_lease(ns: str, name: str, request: Request):
            body = await request.json()
            with emu._lock:
                obj = emu.objects.get(("leases", ns, name))
                if obj is None:
                    return missing("leases", name)
                if not (body.get("metadata") or {}).get("resourceVersion"):
                    return _status(422, "Invalid", "metadata.resourceVersion is required for an update")
                if (c := conflict(obj, body)) is not None:
                    return c
                body["metadata"] = {**obj["metadata"], **{k: v for k, v in body["metadata"].items() if k != "resourceVersion"}}
                emu.objects[("leases", ns, name)] = emu._bump(body)
                return copy.deepcopy(emu.objects[("leases", ns, name)])

        return app

    # ------------------------------------------------------------- serving
    def start(self, port: int = 0) -> str:
        from controller.server import run_server_in_thread

        self.handle = run_server_in_thread(self.app, "127.0.0.1", port)
        return self.handle.url

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    def api_client(self):
        """An official ``kubernetes`` ApiClient pointed at this emulator."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.handle.url
        return client.ApiClient(config)
