"""Informer-style caches of InferenceAutoscalers and Deployments: LIST, then WATCH, with periodic resync.

client-go's reflector and store, the parts KIS-S needs. An :class:`Informer`
lists its kind once (the cache is *synced*), then watches from the list's
resourceVersion with the official client's ``watch.Watch`` and applies each
ADDED/MODIFIED/DELETED event; every ``resync_s`` it lists again and replaces
the cache (client-go replays its cache on resync; relisting also heals a
watch that missed events). A watch answered 410 Gone (its resourceVersion
was compacted) relists at once; any other failure relists after a jittered,
doubling delay (:class:`controller.kube.Backoff`).

Readers take a snapshot (:meth:`Informer.items`, :meth:`Informer.in_namespace`)
under a lock, so the reconcile loop reads 1,000 objects without a request.
:meth:`Informer.fresh` says whether the cache may be trusted: synced, and
either watching now or listed within ``stale_after_s``; when it may not, the
loop reads the API server directly (and fails loudly if that fails too).

Objects are kept as the API server's JSON (no model classes: the official
client's models cost about a millisecond per Deployment), through an
optional ``transform`` (a Deployment becomes its :class:`controller.kube.TargetState`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import structlog
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from controller.kube import Backoff, TargetState, target_state
from controller.pipeline_spec import PIPELINE_KIND, PIPELINE_PLURAL
from controller.spec import GROUP, PLURAL, VERSION

log = structlog.get_logger(__name__)
V = TypeVar("V")
Key = tuple[str, str]


@dataclass(frozen=True)
class InformerStats:
    """Counters for logs, metrics and tests."""

    lists: int
    watches: int
    events: int
    gone: int
    errors: int


class Informer(Generic[V]):
    """A cache of one kind of object (see the module docstring).

    :param name: for logs, e.g. ``"deployments"``.
    :param list_call: the official client's list method with its positional
        arguments bound, taking the list/watch keyword arguments
        (``resource_version``, ``watch``, ``timeout_seconds``, ...).
    :param transform: raw object -> cached value (default: the object).
    :param resync_s: seconds between full relists.
    :param watch_timeout_s: server-side timeout of one watch request, seconds
        (the watch is then renewed from the last resourceVersion seen).
    :param stale_after_s: a cache neither watching nor listed for this long is not fresh.
    :param request_timeout_s: client timeout of a LIST, seconds.
    :param backoff: delays between failed attempts (its ``attempts`` is ignored: an informer never gives up).
    :param rng: jitter of the delays.
    """

    def __init__(self, name: str, list_call: Callable[..., Any], *, transform: Callable[[dict[str, Any]], V] | None = None,
                 resync_s: float = 300.0, watch_timeout_s: float = 300.0, stale_after_s: float = 60.0, request_timeout_s: float = 30.0,
                 backoff: Backoff = Backoff(attempts=1, base_s=0.5, max_s=10.0), rng: np.random.Generator | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for label, value in (("resync_s", resync_s), ("watch_timeout_s", watch_timeout_s), ("stale_after_s", stale_after_s)):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value}")
        self.name = name
        self._list_call = list_call
        self._transform: Callable[[dict[str, Any]], Any] = transform or (lambda obj: obj)
        self.resync_s, self.watch_timeout_s, self.stale_after_s = resync_s, watch_timeout_s, stale_after_s
        self.request_timeout_s = request_timeout_s
        self.backoff = backoff
        self.rng = rng or np.random.default_rng()
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[Key, V] = {}
        self._resource_version = ""
        self._synced = threading.Event()
        self._watching = False
        self._listed_at = -float("inf")
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._counts = {"lists": 0, "watches": 0, "events": 0, "gone": 0, "errors": 0}

    # ------------------------------------------------------------- reading
    @property
    def synced(self) -> bool:
        """Whether the first LIST has filled the cache."""
        return self._synced.is_set()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def fresh(self) -> bool:
        """Synced, and watching now or listed within ``stale_after_s``."""
        with self._lock:
            return self._synced.is_set() and (self._watching or self._clock() - self._listed_at <= self.stale_after_s)

    def items(self) -> list[V]:
        """Every cached value, sorted by (namespace, name)."""
        with self._lock:
            return [self._items[k] for k in sorted(self._items)]

    def in_namespace(self, namespace: str) -> dict[str, V]:
        """The cached values of ``namespace`` by name."""
        with self._lock:
            return {name: value for (ns, name), value in self._items.items() if ns == namespace}

    def get(self, namespace: str, name: str) -> V | None:
        with self._lock:
            return self._items.get((namespace, name))

    @property
    def resource_version(self) -> str:
        with self._lock:
            return self._resource_version

    @property
    def stats(self) -> InformerStats:
        with self._lock:
            return InformerStats(**self._counts)

    # ----------------------------------------------------------- lifecycle
    def start(self) -> Informer[V]:
        """Run the list-and-watch loop in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the loop: cut the open watch (again, until its thread is out: it may be just opening one)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            current = self._watch
            if current is not None:
                current.stop()
            self._thread.join(0.05)
        self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.relist()
                failures = 0
                resync_at = self._clock() + self.resync_s
                while not self._stop.is_set() and self._clock() < resync_at:
                    self._watch_once(min(self.watch_timeout_s, max(1.0, resync_at - self._clock())))
            except ApiException as exc:
                if exc.status == 410:  # the watch's resourceVersion was compacted: list again now
                    self._count("gone")
                    log.info("informer_relist", informer=self.name, reason="410 Gone")
                    continue
                failures = self._failed(exc, failures)
            except Exception as exc:  # transport errors, unreadable answers: retried, never fatal
                if self._stop.is_set():
                    break  # stop() cut the stream
                failures = self._failed(exc, failures)

    def _failed(self, exc: Exception, failures: int) -> int:
        with self._lock:
            self._watching = False
            self._counts["errors"] += 1
        delay = self.backoff.delay(min(failures, 16), self.rng)
        log.warning("informer_error", informer=self.name, error=f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}", retry_in_s=round(delay, 2))
        self._stop.wait(delay)
        return failures + 1

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    # ---------------------------------------------------------- list, watch
    def relist(self) -> None:
        """One LIST: replace the cache, remember its resourceVersion (also called directly by tests)."""
        response = self._list_call(_preload_content=False, _request_timeout=self.request_timeout_s)
        body = json.loads(response.data)
        items = {_key(obj): self._transform(obj) for obj in body.get("items") or []}
        with self._lock:
            self._items = items
            self._resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
            self._listed_at = self._clock()
            self._counts["lists"] += 1
        self._synced.set()

    def _watch_once(self, timeout_s: float) -> None:
        """One watch request from the cache's resourceVersion, until the server ends it (``timeout_s``) or it fails."""
        stream = watch.Watch()
        self._watch = stream
        self._count("watches")
        try:
            events = stream.stream(self._list_call, resource_version=self.resource_version, timeout_seconds=int(timeout_s),
                                   allow_watch_bookmarks=True, _request_timeout=(self.request_timeout_s, timeout_s + 30.0))
            with self._lock:
                self._watching = True
            for event in events:
                self.apply(event.get("type", ""), event.get("raw_object") or event.get("object") or {})
                if self._stop.is_set():
                    break
            with self._lock:  # the stream ended cleanly: the cache was current until now
                self._listed_at = self._clock()
        finally:
            self._watch = None
            with self._lock:
                self._watching = False

    def apply(self, type_: str, obj: Mapping[str, Any]) -> None:
        """One watch event: ADDED/MODIFIED store the object, DELETED drops it, BOOKMARK only moves the resourceVersion."""
        meta = obj.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        with self._lock:
            if type_ in ("ADDED", "MODIFIED"):
                self._items[_key(obj)] = self._transform(dict(obj))
            elif type_ == "DELETED":
                self._items.pop(_key(obj), None)
            elif type_ != "BOOKMARK":
                return
            if version:
                self._resource_version = version
            self._counts["events"] += 1


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class KubeCache:
    """The informers the reconcile loop reads: InferenceAutoscalers and InferencePipelineAutoscalers (raw objects)
    and Deployments (:class:`TargetState`). Without the pipelines' CRD their informer only retries; the loop then
    lists them (a 404: none).

    :param api_client: the official client's ApiClient (its own, so a long watch never holds the loop's connections).
    :param namespace: one namespace, or ``None`` for all.
    :param resync_s: seconds between relists.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str | None = None, *, resync_s: float = 300.0,
                 watch_timeout_s: float = 300.0, stale_after_s: float = 60.0, rng: np.random.Generator | None = None) -> None:
        custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
        rng = rng or np.random.default_rng()
        if namespace:
            list_autoscalers = _bind(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
            list_pipelines = _bind(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PIPELINE_PLURAL)
            list_deployments = _bind(apps.list_namespaced_deployment, namespace)
        else:
            list_autoscalers = _bind(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            list_pipelines = _bind(custom.list_cluster_custom_object, GROUP, VERSION, PIPELINE_PLURAL)
            list_deployments = _bind(apps.list_deployment_for_all_namespaces)
        options = {"resync_s": resync_s, "watch_timeout_s": watch_timeout_s, "stale_after_s": stale_after_s}
        self.autoscalers: Informer[dict[str, Any]] = Informer("inferenceautoscalers", list_autoscalers, rng=rng, **options)
        self.deployments: Informer[TargetState] = Informer("deployments", list_deployments, transform=target_state, rng=rng, **options)
        self.pipelines: Informer[dict[str, Any]] = Informer(PIPELINE_PLURAL, list_pipelines, rng=rng,
                                                            transform=lambda obj: {**obj, "kind": PIPELINE_KIND}, **options)

    def __iter__(self) -> Iterator[Informer[Any]]:
        return iter((self.autoscalers, self.deployments, self.pipelines))

    def start(self) -> KubeCache:
        for informer in self:
            informer.start()
        return self

    def wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(informer.wait_synced(max(0.0, deadline - time.monotonic())) for informer in self)

    def stop(self) -> None:
        for informer in self:
            informer.stop()


def _bind(method: Callable[..., Any], *args: Any) -> Callable[..., Any]:
    """``method`` with ``args`` bound, and no return type ``watch.Watch`` could read: it then yields events as dicts, not models."""

    def call(**kwargs):  # type: ignore[no-untyped-def]  (no annotation on purpose, see above)
        return method(*args, **kwargs)

    return call
