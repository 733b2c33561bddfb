"""The metrics snapshot: named signals with the PromQL that reads them online.

A snapshot is a plain ``dict[str, float]`` for one scale target at one instant.
Its keys are the ``name`` of the signals below plus the Kubernetes replica
counts. The simulator computes every signal the way Prometheus would (rates
over ``window``, ``histogram_quantile`` over bucket rates), so the same
feature code reads both. A missing or unusable value is ``math.nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Metric names that real servers export (vLLM, DCGM exporter).
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
REQUEST_SUCCESS = "vllm:request_success_total"
TTFT_HIST = "vllm:time_to_first_token_seconds"
ITL_HIST = "vllm:inter_token_latency_seconds"
E2E_HIST = "vllm:e2e_request_latency_seconds"
QUEUE_HIST = "vllm:request_queue_time_seconds"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"

# Histogram bucket upper bounds, as vLLM declares them (seconds).
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
ITL_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
E2E_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)
QUEUE_BUCKETS: tuple[float, ...] = E2E_BUCKETS

HISTOGRAM_BUCKETS: Mapping[str, tuple[float, ...]] = {
    TTFT_HIST: TTFT_BUCKETS,
    ITL_HIST: ITL_BUCKETS,
    E2E_HIST: E2E_BUCKETS,
    QUEUE_HIST: QUEUE_BUCKETS,
}

# Snapshot keys filled from the Kubernetes API rather than Prometheus.
REPLICAS_DESIRED = "replicas_desired"
REPLICAS_READY = "replicas_ready"
REPLICAS_STARTING = "replicas_starting"
TIME_OF_DAY_S = "time_of_day_s"

#: Rate window and the long window used for the trend, seconds.
DEFAULT_WINDOW_S = 60.0
DEFAULT_LONG_WINDOW_S = 300.0


@dataclass(frozen=True)
class Signal:
    """One snapshot entry and the PromQL that computes it online.

    ``promql`` is a template with ``{sel}`` (the target's label matchers,
    without braces), ``{window}`` and ``{long_window}`` (Prometheus durations).
    ``grouped`` is the same query aggregated per target, for batched reads: it
    also takes ``{by}`` (comma-separated label names) and returns one series
    per distinct value of those labels. Empty when the signal has no batched form.
    """

    name: str
    promql: str
    unit: str
    help: str
    grouped: str = ""


def _series(metric: str) -> str:
    return f"{metric}{{{{{{sel}}}}}}"


def _rate_inner(metric: str, window: str = "{window}") -> str:
    return f"rate({_series(metric)}[{window}])"


def _quantile(q: float, hist: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({_rate_inner(hist + '_bucket')}))"


def _aggregate(op: str, expr: str) -> dict[str, str]:
    """``op(expr)`` and its per-target form ``op by ({by}) (expr)``."""
    return {"promql": f"{op}({expr})", "grouped": f"{op} by ({{by}}) ({expr})"}


def _rate_signal(metric: str, window: str = "{window}") -> dict[str, str]:
    return _aggregate("sum", _rate_inner(metric, window))


def _quantile_signal(q: float, hist: str) -> dict[str, str]:
    inner = _rate_inner(hist + "_bucket")
    return {
        "promql": _quantile(q, hist),
        "grouped": f"histogram_quantile({q}, sum by (le, {{by}}) ({inner}))",
    }


SIGNALS: tuple[Signal, ...] = (
    Signal("requests_running", unit="requests", help="requests in the running batch, all replicas", **_aggregate("sum", _series(RUNNING))),
    Signal("requests_waiting", unit="requests", help="requests queued for admission, all replicas", **_aggregate("sum", _series(WAITING))),
    Signal("kv_cache_usage", unit="fraction", help="mean KV-cache usage over replicas (0..1)", **_aggregate("avg", _series(KV_USAGE))),
    Signal("gpu_utilization", unit="percent", help="mean GPU utilisation over replicas (0..100)", **_aggregate("avg", _series(GPU_UTIL))),
    Signal("request_rate", unit="req/s", help="completed requests per second over the window", **_rate_signal(REQUEST_SUCCESS)),
    Signal("request_rate_long", unit="req/s", help="completed requests per second over the long window", **_rate_signal(REQUEST_SUCCESS, "{long_window}")),
    Signal("prompt_token_rate", unit="tokens/s", help="prompt tokens prefilled per second", **_rate_signal(PROMPT_TOKENS)),
    Signal("generation_token_rate", unit="tokens/s", help="tokens generated per second", **_rate_signal(GENERATION_TOKENS)),
    Signal("ttft_p95", unit="s", help="p95 time to first token over the window", **_quantile_signal(0.95, TTFT_HIST)),
    Signal("tpot_p95", unit="s", help="p95 inter-token latency over the window", **_quantile_signal(0.95, ITL_HIST)),
    Signal("e2e_p95", unit="s", help="p95 end-to-end latency over the window", **_quantile_signal(0.95, E2E_HIST)),
    Signal("queue_time_p95", unit="s", help="p95 queue time over the window", **_quantile_signal(0.95, QUEUE_HIST)),
)

SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
KUBERNETES_KEYS: tuple[str, ...] = (REPLICAS_DESIRED, REPLICAS_READY, REPLICAS_STARTING)


def prometheus_duration(seconds: float) -> str:
    """Render seconds as a Prometheus duration (``60`` -> ``"60s"``)."""
    return f"{int(round(seconds))}s"


def render_promql(
    signal: Signal,
    selector: str,
    window_s: float = DEFAULT_WINDOW_S,
    long_window_s: float = DEFAULT_LONG_WINDOW_S,
    by: Sequence[str] = (),
) -> str:
    """The concrete query for ``signal`` on the series matched by ``selector``.

    With ``by`` (label names), the batched form: one result series per
    distinct value of those labels, carrying them (see :attr:`Signal.grouped`).
    """
    durations = {"window": prometheus_duration(window_s), "long_window": prometheus_duration(long_window_s)}
    if not by:
        return signal.promql.format(sel=selector, **durations)
    if not signal.grouped:
        raise ValueError(f"signal {signal.name!r} has no grouped (batched) PromQL form")
    return signal.grouped.format(sel=selector, by=", ".join(by), **durations)


def histogram_quantile(q: float, upper_bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile`` on non-cumulative bucket counts.

    ``counts[i]`` is the number of observations in ``(upper_bounds[i-1], upper_bounds[i]]``;
    a final extra count, if given, is the ``+Inf`` bucket. Linear interpolation
    inside the bucket, the lowest bucket interpolating from 0, and the ``+Inf``
    bucket answering the highest finite bound, exactly as Prometheus does.
    Returns NaN when there are no observations.
    """
    total = float(sum(counts))
    if total <= 0 or not (0.0 <= q <= 1.0):
        return math.nan
    rank = q * total
    cumulative = 0.0
    for i, count in enumerate(counts):
        previous = cumulative
        cumulative += count
        if cumulative >= rank and count > 0:
            if i >= len(upper_bounds):  # +Inf bucket
                return float(upper_bounds[-1])
            lower = 0.0 if i == 0 else float(upper_bounds[i - 1])
            upper = float(upper_bounds[i])
            return lower + (upper - lower) * (rank - previous) / count
    return float(upper_bounds[-1])


def is_usable(value: float | None) -> bool:
    """True for a finite number: NaN, Inf and None are missing data."""
    return value is not None and math.isfinite(value)
