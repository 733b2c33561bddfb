"""GPU utilisation from dcgm-exporter joined to a target's pods, against a real Prometheus.

The series are shaped like dcgm-exporter's and kube-state-metrics' own. One
exporter per node, as the DaemonSet runs: node-1's is scraped the way a
ServiceMonitor without ``honorLabels`` does (the exporter's own pod and
namespace are target labels, so Prometheus itself renames the workload's
``pod``/``namespace``/``container`` to ``exported_*``), node-2's directly,
keeping the workload's labels. The serving pods' vLLM series carry
``namespace``, ``pod`` and ``deployment`` (as the chart's PodMonitor adds).

Pods and GPUs::

    llm/llama        llama-7d9f-abc  node-1 GPU 0  60 %   serving
                     llama-7d9f-def  node-2 GPU 0  80 %   serving (tensor parallel:
                                     node-2 GPU 1  90 %    two GPUs, pod mean 85)
                     llama-7d9f-ghi  node-1 GPU 3   0 %   loading: owned, no serving series yet
    llm/embedder     embedder-6f4d-qqq node-2 GPU 2 40 %  another Deployment, same namespace
    team-b/mistral   mistral-5c8b-xyz node-1 GPU 2 30 %
    staging/llama    llama-7d9f-abc  node-2 GPU 3  10 %   same pod name, other namespace
    (no pod)                         node-1 GPU 1 100 %   idle GPU nobody holds ... busy with nothing
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller import signals as sig
from controller.prometheus import PrometheusReader, TargetQuery, exact_selector, renamed
from tests.prom_harness import PrometheusServer, TextExporter, prometheus_binary, start_prometheus

REPO = Path(__file__).resolve().parents[1]
DRIVER = 'DCGM_FI_DRIVER_VERSION="550.54.15",modelName="NVIDIA H100 80GB HBM3"'


def gpu(node: str, index: int, value: float, pod: tuple[str, str, str] | None = None) -> str:
    uuid = f"GPU-{node[-1]}{index}2f6e0c-0000-4a1b-9c3d-00000000000{index}"
    labels = f'gpu="{index}",UUID="{uuid}",device="nvidia{index}",{DRIVER},Hostname="{node}"'
    if pod is not None:
        labels += f',container="{pod[2]}",namespace="{pod[0]}",pod="{pod[1]}"'
    return f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {value}"


HELP = "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
NODE_1 = HELP + "\n".join([
    gpu("node-1", 0, 60, ("llm", "llama-7d9f-abc", "vllm")),
    gpu("node-1", 1, 100),
    gpu("node-1", 2, 30, ("team-b", "mistral-5c8b-xyz", "vllm")),
    gpu("node-1", 3, 0, ("llm", "llama-7d9f-ghi", "vllm")),
]) + "\n"
NODE_2 = HELP + "\n".join([
    gpu("node-2", 0, 80, ("llm", "llama-7d9f-def", "vllm")),
    gpu("node-2", 1, 90, ("llm", "llama-7d9f-def", "vllm")),
    gpu("node-2", 2, 40, ("llm", "embedder-6f4d-qqq", "embed")),
    gpu("node-2", 3, 10, ("staging", "llama-7d9f-abc", "vllm")),
]) + "\n"
SERVING_PODS = [("llm", "llama", "llama-7d9f-abc"), ("llm", "llama", "llama-7d9f-def"), ("llm", "embedder", "embedder-6f4d-qqq"),
                ("team-b", "mistral", "mistral-5c8b-xyz"), ("staging", "llama", "llama-7d9f-abc")]
SERVING = "# TYPE vllm:num_requests_running gauge\n" + "".join(
    f'vllm:num_requests_running{{engine="0",model_name="llama",namespace="{ns}",deployment="{d}",pod="{p}"}} 4\n' for ns, d, p in SERVING_PODS)
OWNED = [("llm", "llama-7d9f-abc", "llama-7d9f"), ("llm", "llama-7d9f-def", "llama-7d9f"), ("llm", "llama-7d9f-ghi", "llama-7d9f"),
         ("llm", "embedder-6f4d-qqq", "embedder-6f4d"), ("team-b", "mistral-5c8b-xyz", "mistral-5c8b"), ("staging", "llama-7d9f-abc", "llama-7d9f")]
REPLICASETS = [("llm", "llama-7d9f", "llama"), ("llm", "llama-55aa", "llama"), ("llm", "embedder-6f4d", "embedder"),
               ("team-b", "mistral-5c8b", "mistral"), ("staging", "llama-7d9f", "llama")]
KSM = ("# TYPE kube_pod_owner gauge\n" + "".join(
    f'kube_pod_owner{{namespace="{ns}",pod="{p}",uid="{i}-uid",owner_kind="ReplicaSet",owner_name="{rs}",owner_is_controller="true"}} 1\n'
    for i, (ns, p, rs) in enumerate(OWNED))
    + 'kube_pod_owner{namespace="llm",pod="cache-0",uid="s-uid",owner_kind="StatefulSet",owner_name="cache",owner_is_controller="true"} 1\n'
    + "# TYPE kube_replicaset_owner gauge\n" + "".join(
    f'kube_replicaset_owner{{namespace="{ns}",replicaset="{rs}",owner_kind="Deployment",owner_name="{d}",owner_is_controller="true"}} 1\n'
    for ns, rs, d in REPLICASETS))

TARGETS = {"llm/llama": {"namespace": "llm", "deployment": "llama"}, "team-b/mistral": {"namespace": "team-b", "deployment": "mistral"},
           "staging/llama": {"namespace": "staging", "deployment": "llama"}}
#: mean over the target's pods of each pod's mean GPU utilisation
EXPECTED = {
    "serving-pods": {"llm/llama": (60 + 85) / 2, "team-b/mistral": 30, "staging/llama": 10},
    "kube-state-metrics": {"llm/llama": (60 + 85 + 0) / 3, "team-b/mistral": 30, "staging/llama": 10},  # the loading pod counts
}

needs_prometheus = pytest.mark.skipif(prometheus_binary() is None, reason="needs the prometheus binary")
pytestmark = [pytest.mark.prometheus, needs_prometheus]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    exporters = [TextExporter(text) for text in (NODE_1, NODE_2, SERVING, KSM)]
    try:
        with start_prometheus(tmp_path_factory.mktemp("dcgm")) as prom:
            node_1, node_2, serving, ksm = exporters
            # node-1 as through a ServiceMonitor without honorLabels: the exporter's own pod and namespace are target labels
            prom.add_scrape_target(node_1.address, {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x1b2c", "container": "nvidia-dcgm-exporter",
                                                    "service": "nvidia-dcgm-exporter", "endpoint": "gpu-metrics"}, wait=False, honor_labels=False)
            for exporter in (node_2, serving, ksm):
                prom.add_scrape_target(exporter.address, wait=False)
            prom.wait_until('count(up{job=~"extra.*"} == 1) == 4', bool, 30)
            prom.wait_until("count(DCGM_FI_DEV_GPU_UTIL) == 8 and count(kube_replicaset_owner) == 5", bool, 20)
            yield prom
    finally:
        for exporter in exporters:
            exporter.stop()


def test_the_series_look_like_dcgm_exporters_through_a_service_monitor(stack):
    """Prometheus did the renaming: node-1's workload labels are exported_*, its pod/namespace the exporter's."""
    (series,) = stack.query('DCGM_FI_DEV_GPU_UTIL{Hostname="node-1", gpu="0"}')
    labels = series["metric"]
    assert labels["exported_pod"] == "llama-7d9f-abc" and labels["exported_namespace"] == "llm" and labels["exported_container"] == "vllm"
    assert labels["pod"] == "nvidia-dcgm-exporter-x1b2c" and labels["namespace"] == "gpu-operator"
    assert labels["UUID"].startswith("GPU-") and labels["modelName"] == "NVIDIA H100 80GB HBM3" and "deployment" not in labels
    (direct,) = stack.query('DCGM_FI_DEV_GPU_UTIL{Hostname="node-2", gpu="0"}')
    assert direct["metric"]["pod"] == "llama-7d9f-def" and "exported_pod" not in direct["metric"]


@pytest.mark.parametrize("join", ["serving-pods", "kube-state-metrics"])
def test_batched_read_joins_gpus_to_each_targets_pods(stack, join):
    reader = PrometheusReader(stack.url, signals=sig.signals_with_gpu_join(join), window_s=5, long_window_s=5)
    snapshots = reader.read([TargetQuery(key, matchers) for key, matchers in TARGETS.items()])
    got = {key: snapshots[key]["gpu_utilization"] for key in TARGETS}
    assert got == pytest.approx(EXPECTED[join]), got
    assert snapshots["llm/llama"]["requests_running"] == 8  # the other signals are unchanged by the join


@pytest.mark.parametrize("join", ["serving-pods", "kube-state-metrics"])
def test_the_single_target_form_agrees(stack, join):
    signal = sig.gpu_utilization_signal(join)
    for key, matchers in TARGETS.items():
        promql = sig.render_promql(signal, exact_selector(renamed(matchers, signal.rename)))
        assert stack.query_value(promql) == pytest.approx(EXPECTED[join][key]), promql


def test_label_selection_alone_finds_nothing_on_real_dcgm_series(stack):
    """The behaviour before the join: dcgm-exporter never labels by `deployment`, so the feature was missing on real GPUs."""
    reader = PrometheusReader(stack.url, signals=sig.signals_with_gpu_join("labels"), window_s=5, long_window_s=5)
    snapshots = reader.read([TargetQuery(key, matchers) for key, matchers in TARGETS.items()])
    assert all(math.isnan(snapshots[key]["gpu_utilization"]) for key in TARGETS)


def test_a_selector_beyond_namespace_and_deployment_works_with_serving_pods(stack):
    reader = PrometheusReader(stack.url, window_s=5, long_window_s=5)
    snapshot = reader.read([TargetQuery("by-model", {"namespace": "llm", "model_name": "llama", "deployment": "llama"})])["by-model"]
    assert snapshot["gpu_utilization"] == pytest.approx(72.5)


def test_the_recording_rule_and_the_dashboard_panel_join_the_same_way(stack):
    rules = yaml.safe_load((REPO / "charts/kis-s/files/prometheus-rules.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("record") == "kis:gpu_utilization:avg"]
    by_target = {f"{r['metric']['namespace']}/{r['metric']['deployment']}": float(r["value"][1]) for r in stack.query(rule["expr"])}
    assert by_target == pytest.approx({**EXPECTED["serving-pods"], "llm/embedder": 40.0})
    dashboard = json.loads((REPO / "charts/kis-s/dashboards/kis-s-inference.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "GPU utilisation"]
    (target,) = panel["targets"]
    promql = target["expr"].replace("$namespace", "llm").replace("$deployment", "llama")
    (series,) = stack.query(promql)
    assert series["metric"] == {"deployment": "llama"} and float(series["value"][1]) == pytest.approx(72.5)


def test_unknown_join_is_refused():
    with pytest.raises(ValueError, match="unknown GPU join 'pods'; use one of serving-pods, kube-state-metrics, labels"):
        sig.gpu_utilization_signal("pods")


def test_the_controllers_choices_are_the_joins():
    from controller.cli import GpuJoin

    assert [choice.value for choice in GpuJoin] == list(sig.GPU_JOINS)
