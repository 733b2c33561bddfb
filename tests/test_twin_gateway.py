"""The twin's gateway loses no request to a scale-down: a claimed replica is not stopped, a gone one is retried."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import httpx
import openai
import pytest

from controller.server import run_server_in_thread
from simulator.stub.app import StubConfig
from simulator.twin.replicas import Replica, ReplicaActuator, StubProcess, create_gateway


@dataclass
class GonePod:
    """A replica whose process has gone: nothing listens on its port any more."""

    port: int
    alive: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self.alive = False


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def actuator_with(*replicas: Replica) -> ReplicaActuator:
    # claim/release and the gateway never read the Deployment, so no emulator is needed here
    return ReplicaActuator(emulator=None, namespace="default", deployment="llm", stub=StubConfig(), replicas=list(replicas))  # type: ignore[arg-type]


def test_claim_takes_the_least_loaded_ready_replica_and_never_a_draining_one():
    busy, idle, draining, starting = (Replica(GonePod(closed_port()), ready=True, inflight=n) for n in (3, 1, 0, 0))  # type: ignore[arg-type]
    draining.draining, starting.ready = True, False
    actuator = actuator_with(busy, idle, draining, starting)
    assert actuator.claim() is idle and idle.inflight == 2
    assert actuator.claim(exclude=(idle,)) is busy and busy.inflight == 4
    actuator.release(idle)
    assert idle.inflight == 1
    assert actuator.claim(exclude=(idle, busy)) is None


def test_claims_from_many_threads_count_every_request():
    replicas = [Replica(GonePod(closed_port()), ready=True) for _ in range(3)]  # type: ignore[arg-type]
    actuator = actuator_with(*replicas)

    def work() -> None:
        for _ in range(500):
            actuator.release(actuator.claim())  # type: ignore[arg-type]
            actuator.claim()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.inflight for r in replicas) == 4 * 500
    assert max(r.inflight for r in replicas) - min(r.inflight for r in replicas) <= 1  # least loaded first


@pytest.fixture
def live_stub():
    handle = StubProcess(StubConfig(time_scale=0.05))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{handle.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield handle
    finally:
        handle.stop()


def test_a_request_sent_to_a_gone_pod_is_answered_by_another(live_stub):
    gone = Replica(GonePod(closed_port()), ready=True)  # type: ignore[arg-type]
    live = Replica(live_stub, ready=True, inflight=1)  # the gone one looks less loaded, so it is chosen first
    actuator = actuator_with(gone, live)
    gateway = run_server_in_thread(create_gateway(actuator, hold_s=5), port=0)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.port}/v1", api_key="unused", max_retries=0, timeout=30)
        answer = client.completions.create(model="kis-stub", prompt="hello", max_tokens=4)
        assert answer.usage.completion_tokens == 4
        stream = client.chat.completions.create(model="kis-stub", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True)
        assert sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content) >= 1
    finally:
        gateway.stop()
    assert (gone.inflight, live.inflight) == (0, 1)  # every claim released, the failed ones included


def test_with_every_pod_gone_the_gateway_holds_then_answers_503():
    actuator = actuator_with(Replica(GonePod(closed_port()), ready=True))  # type: ignore[arg-type]
    gateway = run_server_in_thread(create_gateway(actuator, hold_s=0.5), port=0)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.port}/v1", api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as failure:
            client.completions.create(model="kis-stub", prompt="hello", max_tokens=4)
        assert failure.value.status_code == 503 and "no ready replica" in failure.value.message
    finally:
        gateway.stop()
    assert actuator.replicas[0].inflight == 0
