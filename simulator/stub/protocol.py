"""The OpenAI wire format the stub speaks: requests, token counting, errors.

Token counts are approximated: a prompt costs ``ceil(characters / 4)``
tokens (plus 4 per chat message for the template); the output is
``max_tokens`` (default 16 for completions, as OpenAI's API, and
``default_chat_tokens`` for chat). A load generator that replays a trace
states the exact counts in an extra body field, which OpenAI clients send
with ``extra_body``::

    {"kis": {"prompt_tokens": 812, "output_tokens": 130}}
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExactTokens(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int | None = Field(None, ge=1)
    output_tokens: int | None = Field(None, ge=1)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, ... are accepted and ignored
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    kis: ExactTokens | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class CompletionRequest(_Request):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)


def text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def prompt_tokens(request: CompletionRequest | ChatRequest) -> int:
    if request.kis and request.kis.prompt_tokens:
        return request.kis.prompt_tokens
    if isinstance(request, CompletionRequest):
        prompts = request.prompt if isinstance(request.prompt, list) else [request.prompt]
        return sum(text_tokens(p) for p in prompts)
    total = 0
    for message in request.messages:
        content = message.content
        text = content if isinstance(content, str) else " ".join(str(part.get("text", "")) for part in content or [])
        total += 4 + text_tokens(text)
    return total


def output_tokens(request: CompletionRequest | ChatRequest, default: int) -> int:
    if request.kis and request.kis.output_tokens:
        return request.kis.output_tokens
    return request.max_completion_tokens or request.max_tokens or default


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
