"""The stub inference server through the official openai client, and its metrics."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from controller.server import run_server_in_thread
from simulator.stub.app import StubConfig, create_app

MODEL = "kis-stub"


@pytest.fixture(scope="module")
def stub():
    config = StubConfig(model="llama-8b", served_model_name=MODEL, time_scale=0.2, max_waiting=4, max_num_seqs=8, max_batched_tokens=4096)
    handle = run_server_in_thread(create_app(config), port=0, lifespan="on")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(stub):
    return openai.OpenAI(base_url=f"{stub.url}/v1", api_key="unused", max_retries=0, timeout=30)


def scrape(stub) -> dict[str, float]:
    text = httpx.get(f"{stub.url}/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric(values, prefix):
    return sum(v for k, v in values.items() if k.startswith(prefix + "{") or k == prefix)


def test_models_and_health(client, stub):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert httpx.get(f"{stub.url}/health").status_code == 200


def test_chat_completion(client):
    response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello " * 40}], max_tokens=7)
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content.split() == [f"t{i}" for i in range(7)]
    assert response.usage.completion_tokens == 7 and response.usage.prompt_tokens == 4 + 60  # 240 chars / 4 + template
    assert response.choices[0].finish_reason == "length"


def test_streaming_chat_with_usage(client):
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    pieces, usage, times = [], None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                times.append(time.monotonic())
    assert "".join(pieces).split() == [f"t{i}" for i in range(12)]
    assert usage.completion_tokens == 12
    assert times[-1] >= times[0]


def test_stream_interval_batches_tokens_after_the_first():
    # time_scale 0.5: a token about every 3 ms of wall time, a few per 10 ms driver tick, so the first chunk leaves before 8 are ready
    handle = run_server_in_thread(create_app(StubConfig(served_model_name=MODEL, time_scale=0.5, stream_interval=8)), port=0, lifespan="on")
    try:
        client = openai.OpenAI(base_url=f"{handle.url}/v1", api_key="unused", max_retries=0, timeout=30)
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=50, stream=True)
        sizes = [len(c.choices[0].delta.content.split()) for c in stream if c.choices and c.choices[0].delta.content]
    finally:
        handle.stop()
    assert sum(sizes) == 50 and sizes[0] < 8  # every token arrives; the first without waiting for a full chunk
    assert all(size >= 8 for size in sizes[1:-1]) and len(sizes) <= 1 + 49 // 8 + 1  # then in chunks of at least 8


def test_completions_with_exact_token_counts(client, stub):
    before = scrape(stub)
    response = client.completions.create(model=MODEL, prompt="x", extra_body={"kis": {"prompt_tokens": 900, "output_tokens": 25}})
    assert response.usage.prompt_tokens == 900 and response.usage.completion_tokens == 25
    assert response.choices[0].finish_reason == "stop"
    after = scrape(stub)
    assert metric(after, "vllm:generation_tokens_total") - metric(before, "vllm:generation_tokens_total") == 25
    assert metric(after, "vllm:prompt_tokens_total") - metric(before, "vllm:prompt_tokens_total") == 900


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}, openai.NotFoundError, "model"),
        ({"model": MODEL, "messages": []}, openai.BadRequestError, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, openai.BadRequestError, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000}, openai.BadRequestError, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x" * 40_000}]}, openai.BadRequestError, "messages"),
    ],
)
def test_errors_are_openai_shaped(client, kwargs, error, param):
    with pytest.raises(error) as caught:
        client.chat.completions.create(**kwargs)
    assert caught.value.body["param"] == param and caught.value.body["message"]


def test_malformed_json_is_400(stub):
    response = httpx.post(f"{stub.url}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_queue_full_is_429_and_metrics_move_with_load(client, stub):
    before = scrape(stub)
    body = {"model": MODEL, "prompt": "x", "extra_body": {"kis": {"prompt_tokens": 2000, "output_tokens": 400}}}

    def call():
        try:
            client.completions.create(**body)
            return 200
        except openai.RateLimitError:
            return 429

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(call) for _ in range(24)]
        time.sleep(0.5)
        during = scrape(stub)
        codes = [f.result() for f in futures]
    assert 429 in codes and 200 in codes  # 8 running + 4 waiting fit; the rest are refused
    assert metric(during, "vllm:num_requests_running") > 0
    after = scrape(stub)
    done = metric(after, "vllm:request_success_total") - metric(before, "vllm:request_success_total")
    assert done == codes.count(200)
    assert metric(after, "vllm:time_to_first_token_seconds_count") - metric(before, "vllm:time_to_first_token_seconds_count") == done
    assert 0 < metric(during, "DCGM_FI_DEV_GPU_UTIL") <= 100 or metric(after, "DCGM_FI_DEV_GPU_UTIL") > 0


def test_startup_delay_answers_503():
    handle = run_server_in_thread(create_app(StubConfig(startup_delay_s=30)), port=0, lifespan="on")
    try:
        assert httpx.get(f"{handle.url}/health").status_code == 503
        client = openai.OpenAI(base_url=f"{handle.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model=MODEL, prompt="x")
        assert caught.value.status_code == 503
    finally:
        handle.stop()
