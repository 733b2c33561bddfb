"""Open-loop replay of a workload against an OpenAI-compatible endpoint.

Each request is sent at its arrival time divided by ``speedup``, whatever
happened to the earlier ones (open loop), streaming, so that TTFT and the
inter-token gaps are measured as a client sees them. Requests state their
exact prompt and output token counts (``max_tokens`` plus the stub's ``kis``
extension field, which real servers ignore), so trace replay is faithful.
A concurrency cap protects the target; requests over the cap wait and their
delay counts in their latency.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from controller.slo import SLO
from simulator.workloads.workload import Workload


@dataclass(frozen=True)
class RequestResult:
    """One request as the client saw it (seconds; NaN where it did not get that far)."""

    index: int
    scheduled_s: float
    sent_s: float
    ttft_s: float
    tpot_s: float
    e2e_s: float
    prompt_tokens: int
    output_tokens: int
    tokens_received: int
    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


async def _one(client: httpx.AsyncClient, url: str, model: str, index: int, prompt: int, output: int, scheduled: float, start: float) -> RequestResult:
    sent = time.monotonic() - start
    body = {"model": model, "prompt": "x", "max_tokens": output, "stream": True, "stream_options": {"include_usage": True},
            "kis": {"prompt_tokens": prompt, "output_tokens": output}}
    first = last = None
    tokens = 0
    t0 = time.monotonic()
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                try:
                    message = json.loads(text)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = text[:200]
                return RequestResult(index, scheduled, sent, float("nan"), float("nan"), float("nan"), prompt, output, 0, response.status_code, message)
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if any(c.get("text") for c in chunk.get("choices", [])):
                    now = time.monotonic()
                    first = first or now
                    last = now
                    tokens += 1  # chunks; the usage chunk, when the server sends one, gives the exact count
                if chunk.get("usage"):
                    tokens = int(chunk["usage"].get("completion_tokens", tokens))
    except (httpx.HTTPError, ValueError) as exc:
        return RequestResult(index, scheduled, sent, float("nan"), float("nan"), float("nan"), prompt, output, tokens, 0, f"{type(exc).__name__}: {exc}")
    end = time.monotonic()
    ttft = (first - t0) if first else float("nan")
    tpot = (last - first) / (tokens - 1) if first and tokens > 1 else 0.0
    return RequestResult(index, scheduled, sent, ttft, tpot, end - t0, prompt, output, tokens, 200)


async def replay(
    url: str,
    workload: Workload,
    *,
    model: str = "kis-stub",
    speedup: float = 1.0,
    max_requests: int | None = None,
    concurrency_limit: int = 256,
    timeout_s: float = 120.0,
    on_result: Callable[[RequestResult], None] | None = None,
    keepalive: bool = True,
) -> list[RequestResult]:
    """Send the workload's requests open-loop; returns one result per request sent, in order.

    ``keepalive=False`` opens a connection per request: behind a Kubernetes Service (balanced per connection) the
    requests then spread over the replicas that exist when they are sent, new ones included.
    """
    if speedup <= 0 or concurrency_limit < 1:
        raise ValueError("speedup must be positive and concurrency_limit >= 1")
    count = len(workload) if max_requests is None else min(max_requests, len(workload))
    gate = asyncio.Semaphore(concurrency_limit)
    limits = httpx.Limits(max_connections=concurrency_limit, max_keepalive_connections=concurrency_limit if keepalive else 0)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        start = time.monotonic()

        async def fire(i: int) -> RequestResult:
            scheduled = float(workload.arrival_s[i]) / speedup
            delay = scheduled - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            async with gate:
                result = await _one(client, url.rstrip("/"), model, i, int(workload.prompt_tokens[i]), int(workload.output_tokens[i]), scheduled, start)
            if on_result:
                on_result(result)
            return result

        return list(await asyncio.gather(*(fire(i) for i in range(count))))


def summarize_results(results: list[RequestResult], slo: SLO = SLO()) -> dict[str, float | dict[str, int]]:
    """SLO attainment over every request sent (errors miss), latency percentiles of the successful ones, errors by status."""
    ok = [r for r in results if r.ok]
    out: dict[str, float | dict[str, int]] = {"requests": float(len(results)), "ok": float(len(ok))}
    out["slo_attainment"] = sum(1 for r in ok if slo.met(r.ttft_s, r.tpot_s)) / len(results) if results else float("nan")
    for name in ("ttft", "tpot", "e2e"):
        values = np.array([getattr(r, f"{name}_s") for r in ok])
        for q in (50, 95, 99):
            out[f"{name}_p{q}_s"] = float(np.percentile(values, q)) if len(values) else float("nan")
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[str(r.status or "connection")] = errors.get(str(r.status or "connection"), 0) + 1
    out["errors"] = errors
    return out


def write_results_csv(results: list[RequestResult], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(results[0]).keys()) if results else ["index"])
        writer.writeheader()
        for r in results:
            writer.writerow(asdict(r))
    return path
