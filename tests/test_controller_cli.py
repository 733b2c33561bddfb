"""`kis controller run` and `kis controller crd` against the API emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import yaml
from typer.testing import CliRunner

from controller.cli import CRD
from simulator.cli.main import app
from tests.controller_helpers import NS, autoscaler, condition, deployment, replicas
from tests.kube_emulator import kube  # noqa: F401 (fixture)
from tests.prom_harness import free_port

DOWN = "http://127.0.0.1:9"  # nothing listens there: Prometheus is unreachable


def run(*args: str):
    return CliRunner().invoke(app, ["controller", *args])


def test_once_dry_run_json(kube, tmp_path):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 4}},
                                                behavior={"staleMetrics": "scaleUpOnly"}))
    result = run("run", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig")), "--once", "--dry-run", "--json",
                 "--prometheus-url", DOWN, "--log-format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (decision,) = out["decisions"]
    assert decision["namespace"] == NS and decision["name"] == "llm" and decision["final"] == 4 and decision["stale"]
    assert out["dry_run"] and out["patched"] == [] and [e["kind"] for e in out["errors"]] == ["prometheus"]
    assert replicas(kube, "llm") == 2 and not kube.writes(r"/scale$")  # dry run
    assert condition(kube, "llm", "ScalingActive")["reason"] == "DryRun"
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {"controller_start", "decision", "controller_stop"} <= {entry["event"] for entry in logs}


def test_once_scales(kube, tmp_path):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 4}},
                                                behavior={"staleMetrics": "scaleUpOnly"}))
    result = run("run", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig")), "--once", "--prometheus-url", DOWN,
                 "--log-format", "console")
    assert result.exit_code == 0, result.output
    assert replicas(kube, "llm") == 4


def test_crd_prints_the_shipped_file():
    result = run("crd")
    assert result.exit_code == 0 and result.stdout == CRD.read_text() + "---\n" + CRD.with_name("inferencepipelineautoscalers.yaml").read_text()
    kinds = [doc["spec"]["names"]["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert kinds == ["InferenceAutoscaler", "InferencePipelineAutoscaler"]


def test_help_and_bad_arguments(tmp_path):
    for command in ("run", "crd"):
        assert run(command, "--help").exit_code == 0
    assert "--leader-elect" in run("run", "--help").stdout
    bad_format = run("run", "--log-format", "xml", "--once")
    assert bad_format.exit_code == 2 and "--log-format" in bad_format.output
    no_once = run("run", "--json", "--kubeconfig", str(tmp_path / "none"))
    assert no_once.exit_code == 2 and "--json needs --once" in no_once.output
    missing = run("run", "--once", "--kubeconfig", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_url = run("run", "--once", "--prometheus-url", "prometheus:9090")
    assert bad_url.exit_code == 2 and "http://" in bad_url.output


def test_run_elects_a_leader_serves_http_scales_and_releases_on_sigterm(kube, tmp_path):
    """The whole process: leader election, HTTP endpoints, the loop, a clean shutdown."""
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm", policy={"type": "fixed", "parameters": {"replicas": 4}},
                                                behavior={"staleMetrics": "scaleUpOnly"}))
    port = free_port()
    env = {**os.environ, "POD_NAME": "kis-test-0", "POD_NAMESPACE": "kis-system"}
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "controller", "run", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kc")),
                             "--prometheus-url", DOWN, "--interval", "0.5", "--lease-duration", "3", "--metrics-port", str(port),
                             "--metrics-host", "127.0.0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and replicas(kube, "llm") != 4:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        assert replicas(kube, "llm") == 4
        lease = kube.get("leases", "kis-system", "kis-controller")["spec"]
        assert lease["holderIdentity"] == "kis-test-0" and lease["leaseDurationSeconds"] == 3
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "kis_controller_is_leader 1.0" in metrics and 'kis_controller_scale_events_total{autoscaler="llm",direction="up",namespace="serving"} 1.0' in metrics
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/decisions/{NS}/llm").json()["final"] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0, output
    assert kube.get("leases", "kis-system", "kis-controller")["spec"].get("holderIdentity") is None  # released on the way out
    assert '"event": "controller_stop"' in output
