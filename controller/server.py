"""The controller's HTTP endpoints (FastAPI), served by uvicorn in a thread.

==================================  =============================================================
``GET /healthz``                    liveness: 200 while the reconcile loop makes progress; 503 with
                                    ``{"status": "stalled", ...}`` once its last completed pass (a tick,
                                    a target reconciled, or a standby's wait) is older than
                                    ``stall_after_s`` (the kubelet then restarts the container)
``GET /readyz``                     200 once a reconcile tick has completed, or while standing by
                                    (not leader) and healthy; 503 with ``{"ready": false,
                                    "reason": ...}`` otherwise
``GET /metrics``                    the ``kis_controller_*`` metrics (Prometheus text format)
``GET /decisions[?namespace=ns]``   the latest :class:`DecisionRecord` per autoscaler
``GET /decisions/{namespace}/{name}``  one autoscaler's latest decision; 404 if none is known
==================================  =============================================================

The reconcile loop owns a :class:`ControllerStatus` and updates it; the app
only reads it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Response
from fastapi.responses import JSONResponse

from controller.decision import DecisionRecord
from controller.telemetry import ControllerMetrics


def _iso(wall_s: float | None) -> str | None:
    return None if wall_s is None else datetime.fromtimestamp(wall_s, tz=timezone.utc).isoformat()


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Readiness:
    """Whether the controller is ready, and why (or why not)."""

    ready: bool
    reason: str


class ControllerStatus:
    """What the HTTP endpoints report; thread-safe, updated by the reconcile loop.

    :param max_tick_age_s: when set, a leader whose last completed tick is
        older than this is not ready (a stuck loop). ``None``: no limit.
    :param stall_after_s: when set, the loop counts as stalled (``/healthz``
        fails, :meth:`alive` is false, the Lease is not renewed) once its last
        progress is older than this. ``None``: never.
    :param clock: monotonic seconds, for tick ages (injectable in tests).
    :param wall_clock: Unix seconds, for the times shown in responses.
    """

    def __init__(
        self,
        *,
        max_tick_age_s: float | None = None,
        stall_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("max_tick_age_s", max_tick_age_s), ("stall_after_s", stall_after_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.max_tick_age_s = max_tick_age_s
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._leader = False
        self._healthy = True
        self._unhealthy_reason = ""
        self._ticks = 0
        self._last_tick: float | None = None
        self._last_tick_wall: float | None = None
        self._last_progress = clock()
        self._last_progress_wall = wall_clock()
        self._decisions: dict[tuple[str, str], DecisionRecord] = {}

    # -- updates (the loop) ----------------------------------------------------
    def tick_completed(self) -> None:
        """A reconcile tick over all autoscalers finished."""
        with self._lock:
            self._ticks += 1
            self._last_tick = self._last_progress = self._clock()
            self._last_tick_wall = self._last_progress_wall = self._wall_clock()

    def progress(self) -> None:
        """The loop moved on: a target reconciled, or a standby's pass done (liveness)."""
        with self._lock:
            self._last_progress = self._clock()
            self._last_progress_wall = self._wall_clock()

    def set_leader(self, leader: bool) -> None:
        with self._lock:
            self._leader = bool(leader)

    def set_healthy(self, healthy: bool, reason: str = "") -> None:
        """Mark the controller (un)healthy, e.g. when the Kubernetes API is unreachable."""
        with self._lock:
            self._healthy = bool(healthy)
            self._unhealthy_reason = "" if healthy else (reason or "unhealthy")

    def record_decision(self, namespace: str, name: str, record: DecisionRecord) -> None:
        with self._lock:
            self._decisions[(namespace, name)] = record

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted autoscaler's decision."""
        with self._lock:
            self._decisions.pop((namespace, name), None)

    # -- reads (the endpoints) -----------------------------------------------
    @property
    def leader(self) -> bool:
        with self._lock:
            return self._leader

    @property
    def ticks(self) -> int:
        with self._lock:
            return self._ticks

    def decision(self, namespace: str, name: str) -> DecisionRecord | None:
        with self._lock:
            return self._decisions.get((namespace, name))

    def decisions(self, namespace: str | None = None) -> dict[tuple[str, str], DecisionRecord]:
        """Latest decisions keyed by ``(namespace, name)``, sorted, optionally of one namespace."""
        with self._lock:
            items = sorted(self._decisions.items())
        return {k: v for k, v in items if namespace is None or k[0] == namespace}

    @property
    def last_progress_wall(self) -> float:
        """Unix time of the loop's last progress."""
        with self._lock:
            return self._last_progress_wall

    def liveness(self) -> Readiness:
        """Whether the loop makes progress (see ``stall_after_s``)."""
        with self._lock:
            age = self._clock() - self._last_progress
            if self.stall_after_s is not None and age > self.stall_after_s:
                return Readiness(False, f"reconcile loop stalled: no progress for {age:.1f}s (limit {self.stall_after_s:g}s)")
            return Readiness(True, f"last progress {age:.1f}s ago")

    def alive(self) -> bool:
        return self.liveness().ready

    def readiness(self) -> Readiness:
        with self._lock:
            if not self._healthy:
                return Readiness(False, self._unhealthy_reason)
            if not self._leader:
                return Readiness(True, "standing by: not the leader")
            if self._last_tick is None:
                return Readiness(False, "leader, but no reconcile tick has completed yet")
            age = self._clock() - self._last_tick
            if self.max_tick_age_s is not None and age > self.max_tick_age_s:
                return Readiness(False, f"last reconcile tick completed {age:.1f}s ago (limit {self.max_tick_age_s:g}s)")
            return Readiness(True, f"leader; last reconcile tick {age:.1f}s ago")

    def view(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        readiness = self.readiness()
        with self._lock:
            return {
                "ready": readiness.ready,
                "reason": readiness.reason,
                "leader": self._leader,
                "healthy": self._healthy,
                "ticks": self._ticks,
                "last_tick": _iso(self._last_tick_wall),
                "autoscalers_with_decisions": len(self._decisions),
            }


def decision_json(namespace: str, name: str, record: DecisionRecord) -> dict[str, Any]:
    """One decision as strict JSON (non-finite inputs become ``null``)."""
    return json_safe({"namespace": namespace, "name": name, **record.to_dict()})


def create_app(status: ControllerStatus, metrics: ControllerMetrics) -> FastAPI:
    """The controller's HTTP API over ``status`` and ``metrics`` (see the module docstring)."""
    app = FastAPI(title="KIS-S controller", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        live = status.liveness()
        return JSONResponse({"status": "ok" if live.ready else "stalled", "reason": live.reason}, status_code=200 if live.ready else 503)

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        view = status.view()
        return JSONResponse(view, status_code=200 if view["ready"] else 503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(content=body, media_type=content_type)

    @app.get("/decisions")
    def decisions(namespace: str | None = Query(default=None, description="only this namespace")) -> dict[str, Any]:
        items = [decision_json(ns, name, rec) for (ns, name), rec in status.decisions(namespace).items()]
        return {"count": len(items), "decisions": items}

    @app.get("/decisions/{namespace}/{name}")
    def decision(namespace: str, name: str) -> JSONResponse:
        record = status.decision(namespace, name)
        if record is None:
            known = [f"{ns}/{n}" for ns, n in status.decisions()]
            return JSONResponse(
                {"error": f"no decision recorded for autoscaler {namespace}/{name}", "known": known}, status_code=404
            )
        return JSONResponse(decision_json(namespace, name, record))

    return app


class ServerHandle:
    """A uvicorn server running in a daemon thread; :meth:`stop` shuts it down."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self.server = server
        self.thread = thread
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=timeout_s)


def run_server_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8080, *, startup_timeout_s: float = 10.0, lifespan: str = "off"
) -> ServerHandle:
    """Serve ``app`` with uvicorn in a daemon thread; returns once it accepts connections.

    ``port=0`` picks a free port (see :attr:`ServerHandle.port`); ``lifespan="on"`` runs the app's start-up hooks.
    :raises RuntimeError: the server did not start (port taken, bad host).
    """
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)

    def serve() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn exits on start-up failure; reported below
            pass

    thread = threading.Thread(target=serve, name=f"http-{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"HTTP server could not start on {host}:{port} (is the port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"HTTP server on {host}:{port} did not start within {startup_timeout_s}s")
        time.sleep(0.01)
    bound = port
    for s in server.servers:
        for sock in s.sockets:
            bound = int(sock.getsockname()[1])
    return ServerHandle(server, thread, host, bound)
