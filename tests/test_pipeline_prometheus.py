"""Per-stage Prometheus reads of a pipeline against a real Prometheus: vLLM-shaped series (model_name, pod, namespace) for the
LLM stage, a non-LLM embedder's own queue and batch series through overrides; then the joint decision and the budget."""

from __future__ import annotations

import pytest

from controller.kube import KubeClient
from controller.loop import Reconciler
from controller.prometheus import PrometheusReader
from controller.telemetry import ControllerMetrics
from tests.controller_helpers import NS, deployment, replicas
from tests.kube_emulator import kube  # noqa: F401 (fixture)
from tests.prom_harness import TextExporter, prom_exporter, prometheus  # noqa: F401 (fixtures)
from tests.test_pipeline_controller import FAST_HPA, create

pytestmark = pytest.mark.prometheus
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

#: vLLM's own series as a vLLM pod exports them (labels model_name, engine), with the namespace and pod the scrape adds;
#: a second model in the same namespace must not be read for the stage
VLLM = f"""# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{MODEL}",namespace="{NS}",pod="rag-llm-0"}} 30
vllm:num_requests_running{{engine="0",model_name="{MODEL}",namespace="{NS}",pod="rag-llm-1"}} 50
vllm:num_requests_running{{engine="0",model_name="other-model",namespace="{NS}",pod="chat-0"}} 999
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}",namespace="{NS}",pod="rag-llm-0"}} 10
vllm:num_requests_waiting{{engine="0",model_name="{MODEL}",namespace="{NS}",pod="rag-llm-1"}} 10
vllm:num_requests_waiting{{engine="0",model_name="other-model",namespace="{NS}",pod="chat-0"}} 999
"""
#: an embedding server's own gauges (text-embeddings-inference names), one pod
EMBEDDER = f"""# TYPE te_batch_current_size gauge
te_batch_current_size{{namespace="{NS}",deployment="rag-embed",pod="rag-embed-0"}} 24
# TYPE te_queue_size gauge
te_queue_size{{namespace="{NS}",deployment="rag-embed",pod="rag-embed-0"}} 16
"""
EMBED_OVERRIDES = {"requests_running": "sum(te_batch_current_size{{sel}})", "requests_waiting": "sum(te_queue_size{{sel}})",
                   "replicas_reporting": "count(te_queue_size{{sel}})"}


def pipeline(max_gpus: int | None = None) -> dict:
    stages = [
        {"name": "embed", "scaleTargetRef": {"name": "rag-embed"}, "maxReplicas": 8, "policy": FAST_HPA,
         "metrics": {"overrides": EMBED_OVERRIDES}},
        {"name": "llm", "scaleTargetRef": {"name": "rag-llm"}, "maxReplicas": 16, "gpusPerReplica": 2, "policy": FAST_HPA,
         "metrics": {"selector": {"namespace": NS, "model_name": MODEL}}},
    ]
    return {"apiVersion": "autoscaling.kis-s.dev/v1alpha1", "kind": "InferencePipelineAutoscaler", "metadata": {"name": "rag", "namespace": NS},
            "spec": {"stages": stages, **({"budget": {"maxGpus": max_gpus}} if max_gpus is not None else {})}}


@pytest.fixture(scope="module")
def series(prometheus):
    exporters = [TextExporter(VLLM), TextExporter(EMBEDDER)]
    for exporter in exporters:
        prometheus.add_scrape_target(exporter.address)
    prometheus.wait_until(f'count(vllm:num_requests_running{{namespace="{NS}"}})', lambda r: bool(r) and float(r[0]["value"][1]) == 3)
    prometheus.wait_until("count(te_queue_size)", lambda r: bool(r) and float(r[0]["value"][1]) == 1)
    yield prometheus
    for exporter in exporters:
        exporter.stop()


def reconcile(kube, url: str, **pipeline_args):
    kube.put("deployments", deployment("rag-embed", 2))
    kube.put("deployments", deployment("rag-llm", 2))
    create(kube, pipeline(**pipeline_args))
    with PrometheusReader(url) as reader:
        return Reconciler(KubeClient(kube.api_client()), reader, metrics=ControllerMetrics()).tick(1_800_000_000.0)


def test_each_stage_reads_its_own_series(kube, series):
    report = reconcile(kube, series.url)
    assert not report.errors
    llm, embed = report.decisions["serving/rag/llm"], report.decisions["serving/rag/embed"]
    # the LLM stage: vLLM's gauges summed over its two pods, the other model left out
    assert (llm.inputs["requests_running"], llm.inputs["requests_waiting"], llm.inputs["replicas_reporting"]) == (80, 20, 2)
    # the embedder: its own batch and queue gauges
    assert (embed.inputs["requests_running"], embed.inputs["requests_waiting"], embed.inputs["replicas_reporting"]) == (24, 16, 1)
    # HPA target 10 in flight per replica: 100 / 10 = 10 and 40 / 10 = 4
    assert (llm.final, embed.final) == (10, 4) and (replicas(kube, "rag-llm"), replicas(kube, "rag-embed")) == (10, 4)


def test_the_budget_cuts_the_stages_read_from_prometheus(kube, series):
    report = reconcile(kube, series.url, max_gpus=12)
    llm, embed = report.decisions["serving/rag/llm"], report.decisions["serving/rag/embed"]
    assert 2 * llm.final + embed.final <= 12 and llm.final < 10 and embed.final < 4
    assert llm.steps[-1].guard == "BudgetLimit" and llm.steps[-1].before == 10
    assert (replicas(kube, "rag-llm"), replicas(kube, "rag-embed")) == (llm.final, embed.final)
