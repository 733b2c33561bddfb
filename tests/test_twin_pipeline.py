"""`kis twin --pipeline`: a pipeline of stub servers, one Deployment per stage, scaled jointly by the controller under a GPU budget."""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import pytest

from simulator.pipeline.spec import builtin_pipeline
from simulator.twin.pipeline import TwinPipelineConfig, TwinStage, pipeline_object, stages_of
from simulator.twin.run import spike

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def test_built_in_pipelines_become_stub_stages_and_a_valid_pipeline_autoscaler():
    from controller.pipeline_spec import parse_pipeline

    stages = stages_of(builtin_pipeline("rag"))
    assert [(s.name, s.gpu, s.model) for s in stages] == [("embedder", "L4", "llama-1b"), ("reranker", "L4", "llama-1b"), ("llm", "H100", "llama-8b")]
    parsed = parse_pipeline(pipeline_object(TwinPipelineConfig(stages, name="rag", max_gpus=6)))
    assert [s.scale_target_ref.name for s in parsed.stages] == ["rag-embedder", "rag-reranker", "rag-llm"] and parsed.budget.max_gpus == 6


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")
def test_a_spike_through_the_pipeline_scales_its_stages_within_the_budget_and_loses_nothing():
    from simulator.twin.pipeline import run_twin_pipeline

    config = TwinPipelineConfig((TwinStage("rewrite", "L4", "llama-1b", max_replicas=3), TwinStage("answer", "H100", "llama-8b", max_replicas=3)),
                                name="rag", max_gpus=4, drain_s=8.0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(run_twin_pipeline, spike(duration_s=26, base=2.0, peak=20.0, start_s=4, length_s=18), config).result()
    assert result.requests and all(r.ok for r in result.requests), [r for r in result.requests if not r.ok][:3]
    desired = {name: [d for _, d, _ in points] for name, points in result.timeline.items()}
    assert all(max(d) >= 2 for d in desired.values()), (desired, result.decisions)  # every stage scaled out
    totals = [sum(points[i][1] for points in result.timeline.values()) for i in range(min(map(len, result.timeline.values())))]
    assert max(totals) <= 4, (totals, result.decisions)  # never over the shared budget
    assert {stage for _, stage, _ in result.decisions} == {"rewrite", "answer"}
