"""The stub inference server: an OpenAI-compatible API over a simulated replica.

Latency comes from the same continuous-batching engine and latency model as
the simulator, so a stub replica and a simulated replica behave alike.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from pydantic import ValidationError

from simulator.engine.activity import DCGM_SAMPLE_PERIOD_S
from simulator.engine.capacity import GIB, kv_capacity_tokens
from simulator.engine.replica import EngineConfig, ReplicaEngine
from simulator.profiles.latency import IterationTimeModel
from simulator.stub.driver import InFlight, RealTimeEngine
from simulator.stub.metrics import EngineCollector
from simulator.stub.protocol import ChatRequest, CompletionRequest, error_body, output_tokens, prompt_tokens


@dataclass(frozen=True)
class StubConfig:
    """:param time_scale: engine seconds per wall second divisor (0.1 = ten times faster than the modelled GPU).
    :param startup_delay_s: wall seconds of simulated model load before ``/health`` turns ready.
    :param max_waiting: queued requests before new ones get 429.
    :param stream_interval: generated tokens per streamed chunk (vLLM's ``--stream-interval``; the first token
        is always sent at once, the rest at the end)."""

    gpu: str = "H100"
    model: str = "llama-8b"
    timing: str = "kernel"
    engine: str = "paged"
    calibration: tuple[str, ...] = ()
    served_model_name: str = "kis-stub"
    startup_delay_s: float = 0.0
    max_prompt_tokens: int = 8192
    max_tokens_limit: int = 4096
    max_waiting: int = 512
    max_num_seqs: int = 256
    max_batched_tokens: int = 2048
    default_chat_tokens: int = 128
    default_completion_tokens: int = 16
    time_scale: float = 1.0
    stream_interval: int = 1


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def create_app(config: StubConfig = StubConfig(), *, latency: IterationTimeModel | None = None) -> FastAPI:
    """The FastAPI app; ``latency`` replaces the GPU/model latency model (tests)."""
    from simulator.profiles import default_latency_model, get_gpu, load_shape

    gpu, shape = get_gpu(config.gpu), load_shape(config.model)
    model = latency or default_latency_model(config.gpu, config.model, config.timing, engine=config.engine, calibration=tuple(config.calibration))
    capacity = kv_capacity_tokens(gpu.memory_gib * GIB, shape.weight_bytes(), shape.kv_bytes_per_token())
    engine = ReplicaEngine(model, EngineConfig(capacity, config.max_num_seqs, config.max_batched_tokens, config.max_waiting))
    driver = RealTimeEngine(engine, time_scale=config.time_scale, stream_interval=config.stream_interval)
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine, config.served_model_name, shape.weight_bytes(), shape.kv_bytes_per_token(), driver.now, driver.activity,
                                      period_s=DCGM_SAMPLE_PERIOD_S / config.time_scale,  # one wall second, in engine seconds
                                      request_tokens=(driver.prompt_tokens, driver.generation_tokens)))
    ready_at = time.monotonic() + config.startup_delay_s

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        driver.start()
        yield
        await driver.stop()

    app = FastAPI(title="KIS-S stub inference server", lifespan=lifespan)
    app.state.driver = driver
    app.state.config = config

    def ready() -> bool:
        return time.monotonic() >= ready_at

    @app.get("/health")
    async def health() -> Response:
        if not ready():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.served_model_name, "object": "model", "created": 0, "owned_by": "kis-s"}]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def parse(request: Request, cls: type[CompletionRequest] | type[ChatRequest]) -> CompletionRequest | ChatRequest | JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"])
            return _error(400, f"{param}: {first['msg']}", param=param)

    async def serve(request: Request, kind: str) -> Response:
        if not ready():
            return _error(503, "the model is still loading", "service_unavailable")
        parsed = await parse(request, ChatRequest if kind == "chat" else CompletionRequest)
        if isinstance(parsed, JSONResponse):
            return parsed
        if parsed.model != config.served_model_name:
            return _error(404, f"the model {parsed.model!r} does not exist; this server serves {config.served_model_name!r}", param="model", code="model_not_found")
        n_prompt = prompt_tokens(parsed)
        n_output = output_tokens(parsed, config.default_chat_tokens if kind == "chat" else config.default_completion_tokens)
        if n_prompt > config.max_prompt_tokens:
            return _error(400, f"prompt has {n_prompt} tokens; the maximum is {config.max_prompt_tokens}", param="messages" if kind == "chat" else "prompt", code="context_length_exceeded")
        if n_output > config.max_tokens_limit:
            return _error(400, f"max_tokens {n_output} exceeds the limit {config.max_tokens_limit}", param="max_tokens")
        if not engine.fits(n_prompt, n_output):
            return _error(400, f"{n_prompt} + {n_output} tokens do not fit the KV cache ({capacity} tokens)", code="context_length_exceeded")
        flight = driver.submit(n_prompt, n_output)
        if flight is None:
            return _error(429, f"too many requests waiting (limit {config.max_waiting})", "rate_limit_error", code="queue_full")
        finish = "length" if (parsed.max_tokens or parsed.max_completion_tokens) and not (parsed.kis and parsed.kis.output_tokens) else "stop"
        ident = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if parsed.stream:
            return StreamingResponse(_stream(driver, flight, kind, ident, config.served_model_name, finish, parsed.include_usage), media_type="text/event-stream")
        while flight.done is None:
            await flight.event.wait()
            flight.event.clear()
        return JSONResponse(_full_response(kind, ident, config.served_model_name, flight, finish))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await serve(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await serve(request, "chat")

    return app


def _tokens_text(start: int, end: int) -> str:
    return "".join(f"t{i} " for i in range(start, end))


def _usage(flight: InFlight) -> dict[str, int]:
    return {"prompt_tokens": flight.prompt_tokens, "completion_tokens": flight.output_tokens, "total_tokens": flight.prompt_tokens + flight.output_tokens}


def _full_response(kind: str, ident: str, model: str, flight: InFlight, finish: str) -> dict[str, Any]:
    text = _tokens_text(0, flight.output_tokens)
    created = int(time.time())
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
        return {"id": ident, "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": _usage(flight)}
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": [choice], "usage": _usage(flight)}


async def _stream(driver: RealTimeEngine, flight: InFlight, kind: str, ident: str, model: str, finish: str, include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(text: str | None, reason: str | None, first: bool = False) -> bytes:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        return f"data: {json.dumps({'id': ident, 'object': obj, 'created': created, 'model': model, 'choices': [choice]})}\n\n".encode()

    sent = 0
    while True:
        await flight.event.wait()
        flight.event.clear()
        first_token, generated = driver.progress(flight)
        if first_token is not None and generated > sent:
            # All tokens generated since the last update in one chunk (like vLLM's --stream-interval).
            yield chunk(_tokens_text(sent, generated), None, first=sent == 0)
            sent = generated
        if flight.done is not None:
            yield chunk(None, finish)
            if include_usage:
                usage = {"id": ident, "object": obj, "created": created, "model": model, "choices": [], "usage": _usage(flight)}
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            return
        await asyncio.sleep(0)
