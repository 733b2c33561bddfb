"""``kis calibrate`` against a real Prometheus that scrapes the stub (known engine) and kube-state-metrics-shaped series.

The stub runs the simulator's engine with efficiencies the test sets (compute
0.6x and memory 0.75x the shipped calibration, as a slower engine would); the
load generator replays four 10-second phases of different rates and prompt
and output lengths against it in real time; Prometheus scrapes it every
second. The fit must recover the two efficiency scales within the stated
tolerances, and the files it writes must be accepted by ``kis simulate``,
``kis evaluate`` and ``kis train``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from typer.testing import CliRunner

from controller.server import run_server_in_thread
from simulator.calibration.history import HistoryError, PrometheusHistory, counter_increases, parse_duration
from simulator.cli.main import app
from simulator.cluster.file import load_cluster_file
from simulator.loadgen.replay import replay
from simulator.profiles import default_calibration, get_engine, get_gpu, load_shape
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from simulator.stub.app import StubConfig, create_app
from simulator.workloads.workload import Workload
from tests.prom_harness import free_port, prometheus_binary, start_prometheus

pytestmark = pytest.mark.prometheus
runner = CliRunner()

NAMESPACE, DEPLOYMENT = "serving", "llm"
STUB_POD = "llm-5f7c9d-abcde"
COMPUTE_SCALE, MEMORY_SCALE = 0.6, 0.75
#: Stated tolerances of the recovered scales (relative).
COMPUTE_TOLERANCE, MEMORY_TOLERANCE = 0.15, 0.10
#: (seconds, requests per second, prompt tokens, output tokens)
PHASES = ((10, 4.0, 256, 64), (10, 10.0, 1024, 32), (10, 16.0, 128, 128), (10, 6.0, 1536, 48))


def truth() -> CalibrationParams:
    base = default_calibration()
    paged = get_engine("paged")
    return replace(base, engine="paged", compute_eff=base.compute_eff * COMPUTE_SCALE, attention_compute_eff=base.attention_compute_eff * COMPUTE_SCALE,
                   memory_eff=base.memory_eff * MEMORY_SCALE, attention_memory_eff=paged.attention_memory_eff * MEMORY_SCALE)


def phased_workload(seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals, prompts, outputs, t0 = [], [], [], 0.0
    for seconds, rate, prompt, output in PHASES:
        n = int(rng.poisson(rate * seconds))
        arrivals.append(np.sort(rng.uniform(t0, t0 + seconds, n)))
        prompts.append(np.full(n, prompt))
        outputs.append(np.full(n, output))
        t0 += seconds
    return Workload(np.concatenate(arrivals), np.concatenate(prompts), np.concatenate(outputs), t0, "phases")


class KsmExporter:
    """Series shaped like kube-state-metrics' pod and ReplicaSet families (labels included), served on loopback."""

    def __init__(self, pods: list[dict[str, Any]], replicasets: list[tuple[str, str]]) -> None:
        self.pods, self.replicasets = pods, replicasets
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.address = f"127.0.0.1:{self.server.server_port}"

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pod_labels = ["namespace", "pod", "uid"]
        for name, key, doc in (("kube_pod_created", "created", "Unix creation timestamp"),
                               ("kube_pod_status_scheduled_time", "scheduled", "Unix timestamp when pod moved into scheduled status"),
                               ("kube_pod_status_ready_time", "ready", "Readiness achieved time in unix timestamp for a pod.")):
            family = GaugeMetricFamily(name, doc, labels=pod_labels)
            for pod in self.pods:
                if pod.get(key) is not None:
                    family.add_metric([pod["namespace"], pod["pod"], pod["uid"]], pod[key])
            yield family
        owner = GaugeMetricFamily("kube_pod_owner", "Information about the Pod's owner",
                                  labels=["namespace", "pod", "uid", "owner_kind", "owner_name", "owner_is_controller"])
        for pod in self.pods:
            owner.add_metric([pod["namespace"], pod["pod"], pod["uid"], "ReplicaSet", pod["replicaset"], "true"], 1)
        yield owner
        rs = GaugeMetricFamily("kube_replicaset_owner", "Information about the ReplicaSet's owner",
                               labels=["namespace", "replicaset", "owner_kind", "owner_name", "owner_is_controller"])
        for replicaset, deployment in self.replicasets:
            rs.add_metric([NAMESPACE, replicaset, "Deployment", deployment, "true"], 1)
        yield rs

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ksm_pods(now: float) -> list[dict[str, Any]]:
    def pod(name: str, rs: str, created: float, pending: float, startup: float, namespace: str = NAMESPACE) -> dict[str, Any]:
        return {"namespace": namespace, "pod": name, "uid": f"uid-{name}", "replicaset": rs, "created": created,
                "scheduled": created + pending, "ready": created + pending + startup}

    return [
        pod(STUB_POD, "llm-5f7c9d", now - 900, 1.0, 58.0),         # warm node: 58 s start-up
        pod("llm-5f7c9d-fghij", "llm-5f7c9d", now - 700, 2.0, 62.0),
        pod("llm-5f7c9d-klmno", "llm-5f7c9d", now - 500, 1.0, 60.0),
        pod("llm-5f7c9d-pqrst", "llm-5f7c9d", now - 400, 120.0, 97.0),  # waited 120 s for a new node, pulled the image
        pod("chat-77b8c4-uvwxy", "chat-77b8c4", now - 300, 1.0, 300.0),  # another deployment's pod: not ours
    ]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    stub = run_server_in_thread(create_app(StubConfig(), latency=SpecLatencyModel(get_gpu("H100"), load_shape("llama-8b"), truth(), engine="paged")),
                                port=0, lifespan="on")
    ksm = KsmExporter(ksm_pods(time.time()), [("llm-5f7c9d", DEPLOYMENT), ("chat-77b8c4", "chat")])
    try:
        with start_prometheus(tmp_path_factory.mktemp("prometheus")) as prometheus:
            prometheus.add_scrape_target(stub.url.removeprefix("http://"), {"namespace": NAMESPACE, "deployment": DEPLOYMENT, "pod": STUB_POD})
            prometheus.add_scrape_target(ksm.address)
            workload = phased_workload()
            start = time.time()
            results = asyncio.run(replay(stub.url, workload))
            time.sleep(2.5)  # the last scrape
            # the history ends with the load (the drain after it is not traffic to fit)
            yield {"url": prometheus.url, "start": start - 1.0, "end": start + workload.duration_s + 0.5, "results": results, "workload": workload}
    finally:
        ksm.stop()
        stub.stop()


def _calibrate(history: dict[str, Any], out: Path, *extra: str):
    since = f"{int(history['end'] - history['start']) + 1}s"
    return runner.invoke(app, ["calibrate", "--prometheus-url", history["url"], "--namespace", NAMESPACE, "--deployment", DEPLOYMENT,
                               "--since", since, "--until", f"{history['end']:.3f}", "--step", "4s", "--workload-bin", "10s",
                               "--out", str(out), *extra])


@pytest.fixture(scope="module")
def calibrated(history: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    assert all(r.ok for r in history["results"]), [r.error for r in history["results"] if not r.ok][:3]
    out = tmp_path_factory.mktemp("calibrate")
    result = _calibrate(history, out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_fit_recovers_the_stubs_engine_efficiency(calibrated):
    out, report = calibrated
    fit = report["engine_fit"]
    assert fit["compute_scale"] == pytest.approx(COMPUTE_SCALE, rel=COMPUTE_TOLERANCE)
    assert fit["memory_scale"] == pytest.approx(MEMORY_SCALE, rel=MEMORY_TOLERANCE)
    assert fit["fit_windows"] >= 5 and fit["held_out_windows"] >= 2
    assert max(fit["held_out_error"].values()) < 0.2  # the error on the held-out end of the window is reported, and small
    params = CalibrationParams.load(out / "calibration.json")
    assert params.engine == "paged" and params.compute_eff == pytest.approx(truth().compute_eff, rel=COMPUTE_TOLERANCE)
    assert params.memory_eff == pytest.approx(truth().memory_eff, rel=MEMORY_TOLERANCE)
    assert params.fit["mape"]["held_out"] == {k: round(v, 4) for k, v in fit["held_out_error"].items()}
    assert report["gpu"] == "H100" and "default" in report["gpu_source"]  # the stub's DCGM modelName is no GPU name


def test_cold_start_is_fitted_from_kube_state_metrics(calibrated):
    out, report = calibrated
    startup = report["startup"]
    # ours: three warm starts (58, 62, 60 s) and one on a new node (120 s pending, 97 s); chat's pod is not ours
    assert (startup["pods"], startup["warm"], startup["fresh"]) == (4, 3, 1)
    lifecycle = startup["lifecycle"]
    assert lifecycle["model_load_s"] == pytest.approx(60.0 - 2.0, abs=0.01)  # the warm mean less the cached pull
    assert lifecycle["image_pull_s"] == pytest.approx(97.0 - 58.0, abs=0.01)
    assert lifecycle["provisioning_delay_s"] == pytest.approx(120.0, abs=0.01)
    assert 0 < lifecycle["lifecycle_jitter"] < 0.2
    section = load_cluster_file(out / "cluster.yaml")
    assert (section.model_load_s, section.image_pull_s, section.engine) == (lifecycle["model_load_s"], lifecycle["image_pull_s"], "paged")
    assert section.calibration == (str(out / "calibration.json"),)


def test_exported_workload_has_the_observed_rate_and_token_mix(calibrated, history):
    out, report = calibrated
    workload: Workload = history["workload"]
    sent = len(workload)
    traffic = report["workload"]
    assert 0.8 * sent <= traffic["requests"] <= sent  # completions in whole bins of the window
    assert traffic["mean_prompt_tokens"] == pytest.approx(workload.prompt_tokens.mean(), rel=0.05)
    assert traffic["mean_output_tokens"] == pytest.approx(workload.output_tokens.mean(), rel=0.05)
    result = runner.invoke(app, ["workload", "stats", str(out / "workload.csv"), "--format", "per-minute", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["rows"] == traffic["requests"] and stats["prompt_mean"] == pytest.approx(traffic["mean_prompt_tokens"], abs=0.5)


def test_simulate_evaluate_and_train_accept_the_outputs(calibrated, tmp_path):
    out, _ = calibrated
    cluster, workload = out / "cluster.yaml", out / "workload.csv"
    result = runner.invoke(app, ["simulate", "--cluster", str(cluster), "--trace", str(workload), "--format", "per-minute", "--replicas", "1",
                                 "--no-plots", "--out", str(tmp_path / "sim"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requests"] > 0
    policies = tmp_path / "policies.yaml"
    policies.write_text(yaml.safe_dump([{"name": "fixed-2", "spec": {"type": "fixed", "replicas": 2}}]))
    result = runner.invoke(app, ["evaluate", "--cluster", str(cluster), "--policies", str(policies), "--workloads", "spike", "--duration", "120",
                                 "--seeds", "0", "--no-oracle", "--out", str(tmp_path / "eval"), "--json"])
    assert result.exit_code == 0, result.output
    from simulator.training.config import load_train_config
    from simulator.training.envs import make_env

    config = load_train_config(Path("configs/train/ppo.yaml"), {"total_steps": 10}, cluster=cluster)
    assert config.cluster.calibration == (str(out / "calibration.json"),) and config.cluster.model_load_s == load_cluster_file(cluster).model_load_s
    env = make_env(config)
    env.reset(seed=0)
    env.step(env.action_space.sample())


# ------------------------------------------------------------------ bad answers
class _Canned(BaseHTTPRequestHandler):
    body = b""
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned():
    servers = []

    def serve(body: bytes, status: int = 200) -> str:
        handler = type("Handler", (_Canned,), {"body": body, "status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"<html>not prometheus</html>", 200, "and no JSON"),
    (b'{"status": "success", "data": {"resultType": "matrix"}}', 200, "malformed answer to .*no data.result list"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "many"]]}]}}', 200, r"malformed answer .*sample \[1, 'many'\]"),
    (b'{"status": "success", "data": {"resultType": "vector", "result": []}}', 200, "resultType 'vector', not matrix"),
    (b'{"status": "error", "errorType": "bad_data", "error": "parse error"}', 400, "rejected .*HTTP 400, bad_data: parse error"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', 200, 'no vLLM series for {namespace="serving",deployment="llm"}'),
])
def test_malformed_or_empty_prometheus_answers_give_one_clear_line(canned, tmp_path, body, status, message):
    url = canned(body, status)
    result = runner.invoke(app, ["calibrate", "--prometheus-url", url, "--namespace", NAMESPACE, "--deployment", DEPLOYMENT, "--since", "10m",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "calibration.json").exists()


def test_unreachable_prometheus_and_bad_options_give_one_clear_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["calibrate", "--prometheus-url", url, "--namespace", "a", "--deployment", "b", "--out", str(tmp_path)])
    assert result.exit_code == 2 and f"Prometheus at {url} is unreachable" in result.output
    result = runner.invoke(app, ["calibrate", "--prometheus-url", url, "--namespace", "a", "--deployment", "b", "--since", "six hours"])
    assert result.exit_code == 2 and "--since: expected a duration such as 90s" in result.output


def test_durations_and_counter_increases():
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400 and parse_duration("6h") == 21600
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration("0s")
    # a counter that resets (pod restart) counts its new value; one that appears mid-history starts from zero
    assert list(counter_increases(np.array([10.0, 15.0, 3.0, 7.0]), True)) == [5.0, 3.0, 4.0]
    assert list(counter_increases(np.array([np.nan, 4.0, 9.0]), False)) == [4.0, 5.0]
    with pytest.raises(HistoryError, match="unreachable"):
        PrometheusHistory(f"http://127.0.0.1:{free_port()}", timeout_s=2).range("up", 0, 10, 1)
