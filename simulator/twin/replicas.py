"""The replica actuator and gateway of the local closed loop.

:class:`ReplicaActuator` keeps as many stub servers running as the emulated
Deployment asks for, each in its own process (as pods are: replicas sharing
one interpreter would be CPU-bound, not GPU-bound): new ones start with their
model-load delay and count as ready once ``/health`` answers; one that dies is
replaced; removed ones (newest first) stop receiving requests, finish what
they hold, then stop. It writes the Deployment's
``readyReplicas`` and the Prometheus file-service-discovery targets.
:func:`create_gateway` is the Service in front: it forwards each request to
the ready replica with the fewest requests in flight and streams the answer back;
a request whose replica refuses the connection (a pod gone between the choice
and the send) goes to another, as a proxy retries a connect failure.
While no replica is ready it *holds* requests (as Knative's activator and
KEDA's HTTP interceptor do) and exports how many on ``/metrics`` as
``kis_gateway_pending_requests{namespace, deployment}``, the activation signal
that scales the Deployment from zero.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from controller.signals import GATEWAY_METRIC
from simulator.stub.app import StubConfig
from simulator.twin.apiserver import KubeEmulator


class StubProcess:
    """``kis stub serve`` on a free loopback port, in a child process."""

    def __init__(self, config: StubConfig) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        command = [sys.executable, "-m", "simulator.cli.main", "stub", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--gpu", config.gpu, "--model", config.model, "--timing", config.timing, "--served-model-name", config.served_model_name,
                   "--startup-delay", str(config.startup_delay_s), "--max-waiting", str(config.max_waiting),
                   "--time-scale", str(config.time_scale), "--stream-interval", str(config.stream_interval)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Replica:
    handle: StubProcess
    ready: bool = False
    draining: bool = False
    inflight: int = 0

    @property
    def url(self) -> str:
        return self.handle.url


@dataclass
class ReplicaActuator:
    emulator: KubeEmulator
    namespace: str
    deployment: str
    stub: StubConfig
    targets_file: Path | None = None
    replicas: list[Replica] = field(default_factory=list)
    extra_targets: list[str] = field(default_factory=list)  #: scraped besides the replicas (the gateway)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: a deleted Deployment leaves its pods running, unmanaged, until one is created again (``kubectl delete --cascade=orphan``)
    orphan_on_delete: bool = False

    def ready(self) -> list[Replica]:
        with self.lock:
            return [r for r in self.replicas if r.ready and not r.draining]

    def claim(self, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        """The ready replica with the fewest requests in flight, its count raised under the lock (so a scale-down
        cannot stop it between the choice and the request); ``None`` if there is none."""
        with self.lock:
            ready = [r for r in self.replicas if r.ready and not r.draining and r not in exclude]
            if not ready:
                return None
            replica = min(ready, key=lambda r: r.inflight)
            replica.inflight += 1
            return replica

    def release(self, replica: Replica) -> None:
        """A request claimed with :meth:`claim` is done."""
        with self.lock:
            replica.inflight -= 1

    def sync(self) -> None:
        """One reconciliation of servers with the Deployment's ``spec.replicas``."""
        dep = self.emulator.get("deployments", self.namespace, self.deployment)
        if dep is None and self.orphan_on_delete:
            with self.lock:
                desired = sum(1 for r in self.replicas if not r.draining)
        else:
            desired = int(dep["spec"]["replicas"]) if dep else 0
        with self.lock:
            dead = [r for r in self.replicas if not r.handle.alive]
            self.replicas = [r for r in self.replicas if r.handle.alive]  # a crashed pod is replaced below
            live = [r for r in self.replicas if not r.draining]
            for _ in range(desired - len(live)):
                self.replicas.append(Replica(StubProcess(self.stub)))
            for replica in sorted(live, key=lambda r: not r.ready)[: max(0, len(live) - desired)][::-1]:
                replica.draining = True  # not-ready first, then newest
        for replica in list(self.replicas):
            if not replica.ready and not replica.draining:
                try:
                    replica.ready = httpx.get(f"{replica.url}/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    pass
            with self.lock:
                drained = replica.draining and replica.inflight == 0 and replica in self.replicas
                if drained:
                    self.replicas.remove(replica)  # under the lock: no request can claim it any more
            if drained:
                replica.handle.stop()
        for replica in dead:
            replica.handle.stop()
        ready = len(self.ready())
        if dep is not None and dep.get("status", {}).get("readyReplicas") != ready:
            self.emulator.set_ready(self.namespace, self.deployment, ready)
        self._write_targets()

    def _write_targets(self) -> None:
        if self.targets_file is None:
            return
        with self.lock:
            addresses = [r.url.removeprefix("http://") for r in self.replicas if r.ready]
        # one target per pod, labelled as a PodMonitor labels it (the GPU join matches on namespace and pod)
        entry = [{"targets": [address], "labels": {"namespace": self.namespace, "deployment": self.deployment,
                                                   "pod": f"{self.deployment}-{address.rsplit(':', 1)[-1]}"}} for address in addresses]
        if self.extra_targets:  # e.g. the gateway (its pending requests are the activation signal)
            entry.append({"targets": list(self.extra_targets), "labels": {"namespace": self.namespace, "deployment": self.deployment}})
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(self.targets_file)

    def stop(self) -> None:
        with self.lock:
            replicas, self.replicas = self.replicas, []
        for replica in replicas:
            replica.handle.stop()


def create_gateway(actuator: ReplicaActuator, hold_s: float = 300.0) -> FastAPI:
    """The Service in front of the replicas (least requests in flight); holds requests up to
    ``hold_s`` while no replica is ready (a 503 after that)."""
    app = FastAPI(title="KIS-S twin gateway")
    # Like a Service, no cap on connections: httpx's default of 100 would queue a spike in the gateway.
    client = httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
    registry = CollectorRegistry()
    pending = Gauge(GATEWAY_METRIC, "Requests held at the gateway while no replica is ready", ["namespace", "deployment"],
                    registry=registry).labels(actuator.namespace, actuator.deployment)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        body = await request.body()
        deadline = time.monotonic() + hold_s
        tried: tuple[Replica, ...] = ()
        while True:
            replica = actuator.claim(exclude=tried)
            if replica is None and tried and time.monotonic() < deadline:  # every ready one refused: a moment, then all again
                await asyncio.sleep(0.05)
                tried, replica = (), actuator.claim()
            if replica is None:
                pending.inc()
                try:
                    while replica is None and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                        replica = actuator.claim()
                finally:
                    pending.dec()
            if replica is None:
                return JSONResponse({"error": {"message": "no ready replica", "type": "service_unavailable", "param": None, "code": None}},
                                    status_code=503)
            upstream = client.build_request("POST", f"{replica.url}/v1/{path}", content=body, headers={"content-type": "application/json"})
            try:
                response = await client.send(upstream, stream=True)
            except httpx.ConnectError:  # the pod went away before it took the request: safe to send it elsewhere, as a proxy retries
                actuator.release(replica)
                tried += (replica,)
                continue
            except BaseException:
                actuator.release(replica)
                raise
            break

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()
                actuator.release(replica)

        return StreamingResponse(relay(), status_code=response.status_code, media_type=response.headers.get("content-type"))

    return app
