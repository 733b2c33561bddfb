"""The local closed loop for a pipeline: one stub Deployment per stage, scaled jointly by one InferencePipelineAutoscaler.

As :mod:`simulator.twin.run`, with a Deployment, a replica actuator and a
gateway (the stage's Service) per stage, and a front gateway that passes each
request through the stages in order: every stage but the last answers it
whole, then the last one's answer streams back to the client. So each stage
receives the pipeline's load. The real Prometheus scrapes every stage's
stubs (file service discovery, one file per stage); the controller's own
reconcile loop reads each stage through its default selector
``{namespace, deployment}`` and scales the stages through the emulated API
server, each by its policy, under the shared GPU budget.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from controller.kube import KubeClient
from controller.loop import Reconciler
from controller.prometheus import PrometheusReader
from controller.server import run_server_in_thread
from simulator.loadgen.replay import RequestResult
from simulator.pipeline.spec import PipelineSpec
from simulator.stub.app import StubConfig
from simulator.twin.apiserver import KubeEmulator
from simulator.twin.replicas import ReplicaActuator, create_gateway
from simulator.twin.run import PrometheusProcess
from simulator.twin.session import every, replay_and_drain, stop_threads, wait_until
from simulator.workloads.workload import Workload

NAMESPACE = "default"
#: Stub model of a non-LLM stage (embedder, reranker, speech): a small LLM stands in for its service time.
NON_LLM_MODEL = "llama-1b"
HPA = {"type": "hpa", "parameters": {"metric": "requests_per_replica", "target": 8,
                                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}}


@dataclass(frozen=True)
class TwinStage:
    """One stage of the twin: a stub server per replica, on ``gpu`` serving ``model``."""

    name: str
    gpu: str = "H100"
    model: str = "llama-8b"
    min_replicas: int = 1
    max_replicas: int = 4
    gpus_per_replica: int = 1


@dataclass(frozen=True)
class TwinPipelineConfig:
    """:param stages: in request order. :param max_gpus: the shared budget (``None``: none). Other fields as :class:`~simulator.twin.run.TwinConfig`."""

    stages: tuple[TwinStage, ...]
    name: str = "pipeline"
    max_gpus: int | None = None
    policy: dict = field(default_factory=lambda: dict(HPA))
    interval_s: float = 2.0
    window_s: int = 10
    startup_delay_s: float = 2.0
    drain_s: float = 20.0
    time_scale: float = 1.0
    stream_interval: int = 16


@dataclass
class TwinPipelineResult:
    timeline: dict[str, list[tuple[float, int, int]]]  # stage -> (t, desired, ready)
    requests: list[RequestResult]
    decisions: list[tuple[float, str, str]]  # (t, stage, "current -> final: reason")


def stages_of(spec: PipelineSpec, max_replicas: int = 4) -> tuple[TwinStage, ...]:
    """The twin's stages for a simulator pipeline spec: its GPUs and LLM models; a small LLM for the other stages."""
    return tuple(TwinStage(s.name, s.gpu, s.model if s.is_llm else NON_LLM_MODEL, s.min_replicas, min(s.max_replicas, max_replicas))
                 for s in spec.stages)


def deployment_name(pipeline: str, stage: str) -> str:
    return f"{pipeline}-{stage}"


def pipeline_object(config: TwinPipelineConfig) -> dict:
    """The InferencePipelineAutoscaler the twin creates (one stage per Deployment, ``config.policy`` for each)."""
    stages = [{"name": s.name, "scaleTargetRef": {"name": deployment_name(config.name, s.name)}, "minReplicas": s.min_replicas,
               "maxReplicas": s.max_replicas, "gpusPerReplica": s.gpus_per_replica, "policy": config.policy,
               "metrics": {"windowSeconds": config.window_s, "longWindowSeconds": max(config.window_s, 60)}} for s in config.stages]
    return {"metadata": {"name": config.name, "namespace": NAMESPACE, "generation": 1},
            "spec": {"stages": stages, **({"budget": {"maxGpus": config.max_gpus}} if config.max_gpus is not None else {})}}


def create_front(stage_urls: list[str]) -> FastAPI:
    """The pipeline's entry: each request through every stage's gateway in order; the last stage's answer streams back."""
    app = FastAPI(title="KIS-S twin pipeline")
    client = httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))

    @app.post("/v1/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        body = await request.json()
        for url in stage_urls[:-1]:  # an intermediate stage's whole answer is the next stage's input
            answer = await client.post(f"{url}/v1/{path}", json={**body, "stream": False})
            if answer.status_code != 200:
                return JSONResponse(answer.json(), status_code=answer.status_code)
        upstream = await client.send(client.build_request("POST", f"{stage_urls[-1]}/v1/{path}", json=body), stream=True)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(relay(), status_code=upstream.status_code, media_type=upstream.headers.get("content-type"))

    return app


def run_twin_pipeline(workload: Workload, config: TwinPipelineConfig) -> TwinPipelineResult:
    """Run the pipeline's closed loop for the workload plus ``drain_s``."""
    workdir = Path(tempfile.mkdtemp(prefix="kis-twin-pipeline-"))
    with ExitStack() as resources:
        resources.callback(shutil.rmtree, workdir, ignore_errors=True)
        emulator = KubeEmulator(auto_ready=False)
        emulator.start()
        resources.callback(emulator.stop)
        actuators: dict[str, ReplicaActuator] = {}
        stub = StubConfig(startup_delay_s=config.startup_delay_s, time_scale=config.time_scale, stream_interval=config.stream_interval)
        for s in config.stages:
            name = deployment_name(config.name, s.name)
            emulator.put("deployments", {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"replicas": s.min_replicas},
                                         "status": {"readyReplicas": 0}})
            targets = workdir / f"targets-{s.name}.json"
            targets.write_text("[]")
            actuators[s.name] = ReplicaActuator(emulator, NAMESPACE, name, dataclasses.replace(stub, gpu=s.gpu, model=s.model), targets)
            resources.callback(actuators[s.name].stop)
        emulator.put("inferencepipelineautoscalers", pipeline_object(config))
        prometheus = PrometheusProcess(workdir, workdir / "targets-*.json")
        resources.callback(prometheus.stop)
        gateways = [run_server_in_thread(create_gateway(actuators[s.name]), port=0) for s in config.stages]
        for gateway in gateways:
            resources.callback(gateway.stop)
        front = run_server_in_thread(create_front([g.url for g in gateways]), port=0)
        resources.callback(front.stop)
        reconciler = Reconciler(KubeClient(emulator.api_client()), PrometheusReader(prometheus.url), interval_s=config.interval_s)
        stop = threading.Event()
        timeline: dict[str, list[tuple[float, int, int]]] = {s.name: [] for s in config.stages}
        decisions: list[tuple[float, str, str]] = []
        start = time.monotonic()

        def control() -> None:
            report = reconciler.tick(time.time())
            for key, record in report.decisions.items():
                decisions.append((time.monotonic() - start, key.rsplit("/", 1)[-1], f"{record.current_replicas} -> {record.final}: {record.reason}"))

        def sample() -> None:
            for s in config.stages:
                dep = emulator.get("deployments", NAMESPACE, deployment_name(config.name, s.name)) or {}
                timeline[s.name].append((time.monotonic() - start, int(dep.get("spec", {}).get("replicas", 0)),
                                         int(dep.get("status", {}).get("readyReplicas", 0))))

        threads = [every(0.3, stop, actuator.sync) for actuator in actuators.values()]
        threads += [every(config.interval_s, stop, control), every(1.0, stop, sample)]
        resources.callback(stop_threads, stop, threads)
        wait_until(lambda: all(a.ready() for a in actuators.values()))
        start = time.monotonic()
        results = replay_and_drain(front.url, workload, config.drain_s)
    return TwinPipelineResult(timeline, results, decisions)
