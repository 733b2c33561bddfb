"""The controller's HTTP endpoints (FastAPI TestClient) and the threaded uvicorn server."""

from __future__ import annotations

import json
import math
import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.decision import DecisionRecord, GuardStep
from controller.server import ControllerStatus, create_app, run_server_in_thread
from controller.telemetry import METRIC_NAMES, ControllerMetrics


def _record(final: int, reason: str = "ScaleUpLimit", inputs: dict[str, float] | None = None) -> DecisionRecord:
    return DecisionRecord(
        time_s=100.0, policy="learned", current_replicas=2, proposal=final + 2, final=final, reason=reason,
        steps=(GuardStep("max_step", final + 2, final, "ScaleUpLimit"),), policy_reasons=("queue building",),
        inputs=inputs or {},
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _strict(text: str) -> object:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def parts() -> tuple[ControllerStatus, ControllerMetrics, TestClient, FakeClock]:
    clock = FakeClock()
    status = ControllerStatus(max_tick_age_s=30, clock=clock)
    metrics = ControllerMetrics()
    return status, metrics, TestClient(create_app(status, metrics)), clock


def test_healthz_fails_once_the_loop_stalls_for_n_intervals() -> None:
    clock = FakeClock()
    status = ControllerStatus(stall_after_s=4 * 15, clock=clock)  # --liveness-intervals 4, --interval 15
    client = TestClient(create_app(status, ControllerMetrics()))
    assert client.get("/healthz").status_code == 200 and status.alive()
    clock.now += 59  # a tick of 1,000 autoscalers may take long; each target reconciled is progress
    status.progress()
    clock.now += 59
    assert client.get("/healthz").json()["status"] == "ok"
    clock.now += 2  # 61 s without progress: the loop hangs
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json() == {"status": "stalled", "reason": "reconcile loop stalled: no progress for 61.0s (limit 60s)"}
    assert not status.alive()
    status.tick_completed()  # it moved on again
    assert client.get("/healthz").status_code == 200 and status.alive()


def test_healthz_without_a_limit_never_fails(parts) -> None:  # type: ignore[no-untyped-def]
    _, _, client, clock = parts
    clock.now += 10_000
    assert client.get("/healthz").status_code == 200


def test_readyz_follows_leadership_ticks_and_health(parts) -> None:  # type: ignore[no-untyped-def]
    status, _, client, clock = parts
    response = client.get("/readyz")
    assert response.status_code == 200 and "not the leader" in response.json()["reason"]

    status.set_leader(True)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["ready"] is False and "no reconcile tick" in response.json()["reason"]

    status.tick_completed()
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["ticks"] == 1 and response.json()["leader"] is True

    clock.now += 31  # the loop is stuck
    response = client.get("/readyz")
    assert response.status_code == 503 and "31.0s ago" in response.json()["reason"]
    status.tick_completed()
    assert client.get("/readyz").status_code == 200

    status.set_healthy(False, "kubernetes API unreachable")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["reason"] == "kubernetes API unreachable"
    status.set_leader(False)
    assert client.get("/readyz").status_code == 503  # a standby must be healthy too
    status.set_healthy(True)
    assert client.get("/readyz").status_code == 200


def test_metrics_endpoint_exposes_the_registry(parts) -> None:  # type: ignore[no-untyped-def]
    _, metrics, client, _ = parts
    metrics.observe_decision("default", "llama", _record(4))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in response.text
    assert 'kis_controller_desired_replicas{autoscaler="llama",namespace="default"} 4.0' in response.text


def test_decisions_list_filter_and_strict_json(parts) -> None:  # type: ignore[no-untyped-def]
    status, _, client, _ = parts
    status.record_decision("team-b", "mistral", _record(3))
    status.record_decision("default", "llama", _record(4, inputs={"request_rate": 2.5, "ttft_p95": math.nan}))
    status.record_decision("default", "llama", _record(5, reason="DesiredWithinRange"))  # replaces the previous

    body = _strict(client.get("/decisions").text)
    assert isinstance(body, dict) and body["count"] == 2
    assert [(d["namespace"], d["name"], d["final"]) for d in body["decisions"]] == [("default", "llama", 5), ("team-b", "mistral", 3)]
    llama = body["decisions"][0]
    assert llama["reason"] == "DesiredWithinRange" and llama["steps"][0]["guard"] == "max_step"

    only_b = client.get("/decisions", params={"namespace": "team-b"}).json()
    assert only_b["count"] == 1 and only_b["decisions"][0]["name"] == "mistral"
    assert client.get("/decisions", params={"namespace": "nobody"}).json() == {"count": 0, "decisions": []}

    status.record_decision("default", "llama", _record(4, inputs={"request_rate": 2.5, "ttft_p95": math.nan}))
    one = client.get("/decisions/default/llama")
    assert one.status_code == 200
    detail = _strict(one.text)
    assert isinstance(detail, dict)
    assert detail["inputs"] == {"request_rate": 2.5, "ttft_p95": None}
    assert detail["policy_reasons"] == ["queue building"]


def test_unknown_decision_is_a_clear_404(parts) -> None:  # type: ignore[no-untyped-def]
    status, _, client, _ = parts
    status.record_decision("default", "llama", _record(4))
    response = client.get("/decisions/default/ghost")
    assert response.status_code == 404
    assert "default/ghost" in response.json()["error"] and response.json()["known"] == ["default/llama"]
    status.forget("default", "llama")
    assert client.get("/decisions/default/llama").status_code == 404


def test_status_rejects_bad_tick_age() -> None:
    with pytest.raises(ValueError, match="max_tick_age_s"):
        ControllerStatus(max_tick_age_s=0)


def test_threaded_server_serves_and_stops() -> None:
    status, metrics = ControllerStatus(), ControllerMetrics()
    metrics.set_leader(True)
    handle = run_server_in_thread(create_app(status, metrics), "127.0.0.1", 0)
    try:
        assert handle.port > 0
        assert httpx.get(f"{handle.url}/healthz").status_code == 200
        assert "kis_controller_is_leader 1.0" in httpx.get(f"{handle.url}/metrics").text
    finally:
        handle.stop()
    assert not handle.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.url}/healthz", timeout=2)


def test_threaded_server_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}"):
            run_server_in_thread(create_app(ControllerStatus(), ControllerMetrics()), "127.0.0.1", port)
