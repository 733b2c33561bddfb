"""A Kubernetes API emulator for the controller's tests: kmock, extended.

The controller always talks to it through the official ``kubernetes`` client
over HTTP (:meth:`KubeEmulator.api_client`, :meth:`KubeEmulator.kubeconfig`).

kmock's ``KubernetesEmulator`` serves discovery and GET from its in-memory
object store. It lacks semantics the controller depends on (measured on
kmock 0.8: no PUT, no ``resourceVersion`` and no 409 on a stale write, the
``scale`` subresource answers the whole Deployment, create answers 200, a
LIST's resourceVersion is ``"..."`` and a WATCH replays every object from
the start whatever resourceVersion it names), so :class:`ControllerAPI`
takes over every write, LIST, WATCH and DELETE, in the same store and under
kmock's own lock:

* ``resourceVersion`` grows on every write; a write that names a stale one
  answers 409 Conflict (POST of an existing name: 409 AlreadyExists);
* ``POST`` creates (201; ``generateName`` works), with uid, creationTimestamp
  and ``generation``, which grows when ``spec`` changes;
* ``PUT`` replaces an object (Leases), ``PATCH`` merges (RFC 7386);
* ``deployments/{name}/scale`` answers an ``autoscaling/v1`` Scale, and a
  write to it changes ``spec.replicas``;
* ``status`` is a subresource: writes to it change only ``status``, and
  writes to the main resource leave ``status`` alone;
* a Deployment's ``status.replicas`` follows ``spec.replicas`` and, with
  ``auto_ready`` (default), so does ``readyReplicas``;
* a LIST answers the store's current resourceVersion; ``?watch=true`` streams
  the ADDED/MODIFIED/DELETED events after the ``resourceVersion`` it names
  (all of them, from a :class:`simulator.twin.apiserver.WatchLog`), then the
  new ones as they happen, until ``timeoutSeconds``; a resourceVersion older
  than the log keeps answers one ERROR event with 410 Expired, as the API
  server does (:meth:`KubeEmulator.compact` forces that); :meth:`KubeEmulator.drop_watches`
  cuts every open watch (a restarted API server);
* faults are injected per method and path (:meth:`KubeEmulator.inject`): an
  HTTP status, a delay (for client timeouts), or both; a watch is matched
  with the method ``WATCH``.

Label selectors are ignored (kmock's behaviour): the controller lists
InferenceAutoscalers whole and reads its targets by name, so it needs none.

The server runs on loopback in its own thread and event loop, because the
official client is synchronous: a test calls it from the main thread while
the emulator answers from the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import pytest
import yaml

from simulator.twin.apiserver import WatchLog, expired_event, merge_patch

# One access-log line per request is noise, and it outlives pytest's capture when a test ends mid-request.
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

#: Short names the tests use -> kmock resource keys.
RESOURCES: dict[str, str] = {
    "deployments": "apps/v1/deployments",
    "inferenceautoscalers": "autoscaling.kis-s.dev/v1alpha1/inferenceautoscalers",
    "inferencepipelineautoscalers": "autoscaling.kis-s.dev/v1alpha1/inferencepipelineautoscalers",
    "leases": "coordination.k8s.io/v1/leases",
    "events": "v1/events",
    "configmaps": "v1/configmaps",
}
#: Resources whose ``status`` is a subresource.
WITH_STATUS = {("apps", "deployments"), ("autoscaling.kis-s.dev", "inferenceautoscalers"), ("autoscaling.kis-s.dev", "inferencepipelineautoscalers")}


def _resource(kind: str) -> kmock.resource:
    return kmock.resource(RESOURCES.get(kind, kind))


def _kind_key(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.plural}"


def _failure(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    return aiohttp.web.json_response(body, status=code)


class _Refused(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class Fault:
    """The next ``times`` requests matching ``method`` and ``path`` wait ``delay_s``, then answer ``status`` (``None``: serve normally)."""

    method: str
    path: re.Pattern[str]
    status: int | None
    times: int
    delay_s: float = 0.0


@attrs.define(kw_only=True)
class ControllerAPI(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with versioned writes, the scale and status subresources, PUT and faults."""

    auto_ready: bool = True
    log: list[tuple[str, str]] = attrs.field(factory=list, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _watch_log: WatchLog = attrs.field(factory=WatchLog, init=False)
    _watchers: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _cut_watchers: set[asyncio.Event] = attrs.field(factory=set, init=False)

    # ------------------------------------------------------------- requests
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method.value).upper()
        watching = request.action == kmock.action.WATCH
        self.log.append(("WATCH" if watching else method, request.url.path))
        fault = self._take_fault("WATCH" if watching else method, request.url.path)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                return _failure(fault.status, "Injected", f"injected fault {fault.status}")
        if request.resource is not None and watching:
            return await self._watch(request)
        if request.resource is not None and request.action == kmock.action.LIST:
            async with self._lock:
                return aiohttp.web.json_response(self._list(request))
        reads = method == "GET" and (request.subresource in (None, "status"))
        if request.resource is None or (reads and request.name is not None):
            return await super()._handle(request)  # kmock: discovery, get
        try:
            async with self._lock:
                code, body = self._delete(request) if method == "DELETE" else self._write(method, request)
        except _Refused as exc:
            return _failure(exc.code, exc.reason, exc.message)
        return aiohttp.web.json_response(body, status=code)

    def _list(self, request: kmock.Request) -> dict[str, Any]:
        items = [copy.deepcopy(o.raw) for (r, ns, _), o in self._objects.items()
                 if r == request.resource and not o.deleted and (request.namespace is None or ns == request.namespace)]
        return {"apiVersion": request.resource.group and f"{request.resource.group}/{request.resource.version}" or request.resource.version,
                "kind": "List", "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    async def _watch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Stream the events after ``?resourceVersion`` (as the API server's watch cache), then the new ones."""
        raw = request._raw_request
        assert raw is not None and request.resource is not None
        params = request.params
        kind = _kind_key(request.resource)
        try:
            since = int(params.get("resourceVersion") or self._revision)
            timeout_s = float(params.get("timeoutSeconds") or 1800)
        except ValueError:
            return _failure(400, "BadRequest", f"resourceVersion must be an integer, got {params.get('resourceVersion')!r}")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        wake = asyncio.Event()
        self._watchers.add(wake)
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            while True:
                lines = self._watch_log.since(kind, request.namespace, since)
                if lines is None:
                    await response.write(expired_event(str(since), self._watch_log.oldest))
                    break
                since = self._revision
                wake.clear()
                if lines:
                    await response.write(b"".join(lines))
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or wake in self._cut_watchers:
                    break
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                if wake in self._cut_watchers:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(wake)
            self._cut_watchers.discard(wake)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _notify(self) -> None:
        for wake in self._watchers:
            wake.set()

    def drop_watches(self) -> None:
        """End every open watch stream now (the informers must watch again)."""
        self._cut_watchers.update(self._watchers)
        self._notify()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method in (method, "*") and fault.path.search(path):
                fault.times -= 1
                return fault
        return None

    # --------------------------------------------------------------- writes
    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
        return obj

    def _sync_deployment(self, obj: dict[str, Any]) -> None:
        spec, status = obj.setdefault("spec", {}), obj.setdefault("status", {})
        replicas = int(spec.setdefault("replicas", 1))
        status["replicas"] = replicas
        status["observedGeneration"] = obj["metadata"].get("generation", 1)
        if self.auto_ready:
            status["readyReplicas"] = replicas

    def _store(self, resource: kmock.resource, namespace: str | None, name: str, obj: dict[str, Any], *, sync: bool = True, event: bool = True) -> None:
        if sync and resource.plural == "deployments":
            self._sync_deployment(obj)
        self._bump(obj)
        key = (resource, namespace, name)
        added = key not in self._objects or self._objects[key].deleted
        if key in self._objects:
            self._objects[key].history.append(obj)  # also brings a deleted object back
        else:
            self._objects[key] = obj
        if event:
            self._watch_log.record(self._revision, _kind_key(resource), "ADDED" if added else "MODIFIED", obj)
            self._notify()

    def _remove(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete a stored object; the DELETED event carries its last state at a new resourceVersion."""
        key = (resource, namespace, name)
        last = self._bump(copy.deepcopy(self._objects[key].raw))
        self._objects[key].delete()
        self._watch_log.record(self._revision, _kind_key(resource), "DELETED", last)
        self._notify()
        return last

    def _delete(self, request: kmock.Request) -> tuple[int, dict[str, Any]]:
        if request.name is None or request.subresource is not None:
            raise _Refused(405, "MethodNotAllowed", f"DELETE {request.url.path} is not served")
        if self._current(request.resource, request.namespace, request.name) is None:
            raise _Refused(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
        return 200, self._remove(request.resource, request.namespace, request.name)

    def _current(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _create(self, resource: kmock.resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _Refused(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = f"{meta['generateName']}{self._revision + 1:05x}"
        if self._current(resource, namespace, meta["name"]) is not None:
            raise _Refused(409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists')
        if namespace is not None:
            meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        meta["uid"] = f"uid-{self._revision + 1}"
        meta["creationTimestamp"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1
        self._store(resource, namespace, meta["name"], obj)
        return obj

    def _write(self, method: str, request: kmock.Request) -> tuple[int, dict[str, Any]]:
        resource, namespace, name, sub = request.resource, request.namespace, request.name, request.subresource
        body = request.data
        if method == "GET" and sub == "scale" and resource.plural == "deployments" and name is not None:
            current = self._current(resource, namespace, name)
            if current is None:
                raise _Refused(404, "NotFound", f'deployments.apps "{name}" not found')
            return 200, self.scale_of(current)
        if isinstance(body, list):
            raise _Refused(415, "UnsupportedMediaType", "JSON patch is not supported by the emulator; send a merge patch")
        if not isinstance(body, dict):
            raise _Refused(400, "BadRequest", "the body must be a JSON object")
        if method == "POST" and name is None:
            return 201, self._create(resource, namespace, body)
        if name is None or method not in ("PATCH", "PUT"):
            raise _Refused(405, "MethodNotAllowed", f"{method} {request.url.path} is not served")
        current = self._current(resource, namespace, name)
        if current is None:
            raise _Refused(404, "NotFound", f'{resource.plural} "{name}" not found')
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise _Refused(409, "Conflict", f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been modified; '
                                            "please apply your changes to the latest version and try again")
        if sub == "scale" and resource.plural == "deployments":
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _Refused(422, "Invalid", f"spec.replicas: must be a non-negative integer, got {replicas!r}")
            new = current  # already a private copy
            new["spec"]["replicas"] = replicas
            self._store(resource, namespace, name, new)
            return 200, self.scale_of(new)
        new = current if sub == "status" else copy.deepcopy(current)  # the main resource's spec is compared with the old one below
        if sub == "status":
            status = body.get("status") or {}
            new["status"] = merge_patch(new.get("status") or {}, status) if method == "PATCH" else copy.deepcopy(status)
        elif sub is None:
            changes = {k: v for k, v in body.items() if not ((resource.group, resource.plural) in WITH_STATUS and k == "status")}
            if method == "PATCH":
                merge_patch(new, {k: v for k, v in changes.items() if k != "metadata"})
                merge_patch(new["metadata"], {k: v for k, v in (changes.get("metadata") or {}).items() if k != "resourceVersion"})
            else:
                keep = {k: current["metadata"][k] for k in ("uid", "creationTimestamp", "generation", "namespace", "name") if k in current["metadata"]}
                new = {**copy.deepcopy(changes), "metadata": {**copy.deepcopy(changes.get("metadata") or {}), **keep}}
                if "status" in current and (resource.group, resource.plural) in WITH_STATUS:
                    new["status"] = current["status"]
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        else:
            raise _Refused(404, "NotFound", f"subresource {sub!r} of {resource.plural} is not served")
        self._store(resource, namespace, name, new)
        return 200, new

    @staticmethod
    def scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
        """The ``autoscaling/v1`` Scale of a stored Deployment."""
        meta = deployment["metadata"]
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {"app": meta["name"]}
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
                "spec": {"replicas": deployment["spec"]["replicas"]},
                "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


class KubeEmulator:
    """Runs :class:`ControllerAPI` on loopback in a thread; sync helpers for test setup and assertions."""

    def __init__(self, *, auto_ready: bool = True) -> None:
        self.auto_ready = auto_ready
        self.api: ControllerAPI | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or self._error is not None:
            raise RuntimeError(f"the Kubernetes API emulator did not start: {self._error}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with ControllerAPI(auto_ready=self.auto_ready) as api:
            # aiohttp's server directly: kmock.Server would also patch aiohttp's DNS resolver process-wide.
            async with aiohttp.test_utils.RawTestServer(api, host="127.0.0.1", port=0) as server:
                self.api, self.url = api, str(server.make_url("")).rstrip("/")
                self._ready.set()
                await self._stop.wait()
                api.drop_watches()  # open watch streams end, so the server can close at once
                await asyncio.sleep(0)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10.0)
        self._thread = None

    def _call(self, coro_fn: Any) -> Any:
        assert self._loop is not None and self.api is not None, "start() the emulator first"

        async def locked() -> Any:
            async with self.api._lock:  # type: ignore[union-attr]
                return coro_fn()

        return asyncio.run_coroutine_threadsafe(locked(), self._loop).result(10.0)

    # --------------------------------------------------------------- client
    def api_client(self, timeout_s: float | None = None) -> Any:
        """An official ``kubernetes`` ApiClient pointed at this emulator."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        config.retries = False  # the controller's own retries are under test, not urllib3's
        return client.ApiClient(config)

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig that points at this emulator."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
            "users": [{"name": "emulator", "user": {"token": "test"}}],
        }))
        return path

    # ---------------------------------------------------------------- state
    def put(self, kind: str, obj: dict[str, Any], *, watch_event: bool = True) -> dict[str, Any]:
        """Create or replace an object directly (test setup, or someone else's write).

        ``watch_event=False`` changes it without telling the watches (an event lost on the way: only a relist sees it).
        """
        resource = _resource(kind)

        def write() -> dict[str, Any]:
            api = self.api
            assert api is not None
            new = copy.deepcopy(obj)
            meta = new.setdefault("metadata", {})
            namespace = meta.setdefault("namespace", "default") if kind != "namespaces" else None
            current = api._current(resource, namespace, meta["name"])
            base = (current or {}).get("metadata", {})
            meta.setdefault("uid", base.get("uid", f"uid-{api._revision + 1}"))
            meta.setdefault("creationTimestamp", base.get("creationTimestamp", "2026-01-01T00:00:00Z"))
            if current is None:
                meta.setdefault("generation", 1)
            else:  # as the API server: generation grows when the spec changes
                meta["generation"] = int(base.get("generation", 1)) + (current.get("spec") != new.get("spec"))
            api._store(resource, namespace, meta["name"], new, event=watch_event)
            return copy.deepcopy(new)

        return self._call(write)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(lambda: self.api._current(_resource(kind), namespace, name))  # type: ignore[union-attr]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object (a DELETED event for the watches)."""
        def remove() -> None:
            if self.api._current(_resource(kind), namespace, name) is not None:  # type: ignore[union-attr]
                self.api._remove(_resource(kind), namespace, name)  # type: ignore[union-attr]

        self._call(remove)

    def compact(self) -> None:
        """Forget the watch history: a watch from any resourceVersion older than the store's gets 410 Gone."""
        self._call(lambda: self.api._watch_log.compact(self.api._revision))  # type: ignore[union-attr]

    def drop_watches(self) -> None:
        """Cut every open watch stream (as a restarting API server does)."""
        self._call(lambda: self.api.drop_watches())  # type: ignore[union-attr]

    @property
    def open_watches(self) -> int:
        """Watch streams open now."""
        return self._call(lambda: len(self.api._watchers))  # type: ignore[union-attr]

    @property
    def revision(self) -> int:
        """The store's current resourceVersion."""
        return self._call(lambda: self.api._revision)  # type: ignore[union-attr]

    def set_ready(self, namespace: str, name: str, ready: int) -> None:
        """Set a Deployment's ``status.readyReplicas`` (pods becoming ready or failing)."""

        def write() -> None:
            api = self.api
            assert api is not None
            current = api._current(_resource("deployments"), namespace, name)
            assert current is not None, f"no deployment {namespace}/{name}"
            current.setdefault("status", {})["readyReplicas"] = ready
            api._store(_resource("deployments"), namespace, name, current, sync=False)

        self._call(write)

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = _resource(kind)

        def items() -> list[dict[str, Any]]:
            return [copy.deepcopy(o.raw) for (r, ns, _), o in self.api.objects.items()  # type: ignore[union-attr]
                    if r == resource and not o.deleted and (namespace is None or ns == namespace)]

        return self._call(items)

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.list("events", namespace)

    def inject(self, method: str, path_regex: str, status: int | None = None, *, times: int = 1, delay_s: float = 0.0) -> None:
        """The next ``times`` requests matching wait ``delay_s``, then answer ``status`` (``None``: normally)."""
        fault = Fault(method.upper(), re.compile(path_regex), status, times, delay_s)
        self._call(lambda: self.api._faults.append(fault))  # type: ignore[union-attr]

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request served so far."""
        return self._call(lambda: list(self.api.log))  # type: ignore[union-attr]

    def writes(self, path_regex: str) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in ("POST", "PUT", "PATCH") and re.search(path_regex, r[1])]


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """A fresh API emulator per test (starts in a few milliseconds)."""
    emulator = KubeEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


def main() -> None:
    """``python -m tests.kube_emulator``: serve on loopback in this process until stdin closes; prints the URL first."""
    import sys

    emulator = KubeEmulator().start()
    print(emulator.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
