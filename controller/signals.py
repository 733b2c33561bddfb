"""The metrics snapshot: named signals with the PromQL that reads them online.

A snapshot is a plain ``dict[str, float]`` for one scale target at one instant.
Its keys are the ``name`` of the signals below plus the Kubernetes replica
counts. The simulator computes every signal the way Prometheus would (rates
over ``window``, ``histogram_quantile`` over bucket rates), so the same
feature code reads both. A missing or unusable value is ``math.nan``.

**The serving view.** ``requests_running`` and ``requests_waiting`` (and the
per-pod averages) are over the *serving* pods: Running, with a sample, not
terminating. That is the Kubernetes HPA's view (``groupPods`` ignores pods
with a deletion timestamp) and Knative's (terminating pods leave the
endpoints it scrapes). The simulator leaves draining replicas out; online,
Prometheus keeps scraping a terminating pod until it exits, so add
``unless on (namespace, pod) kube_pod_deletion_timestamp`` (kube-state-metrics)
to the overrides of these signals and of ``replicas_reporting`` where that
matters.

**Signals read on demand** (:data:`ON_DEMAND_SIGNALS`) are read only for the
targets whose policy or spec asks for them (:func:`wanted_signals`), or that
override them:

=====================  ========================================================
``replicas_reporting``  pods with a sample of the serving gauges (no series: 0)
``replicas_pending``    pods in phase Pending (unscheduled, pulling the image);
                        no default query: e.g. with kube-state-metrics and the
                        pod label ``app`` allow-listed,
                        ``sum(kube_pod_status_phase{phase="Pending"} * on (namespace, pod) group_left
                        kube_pod_labels{label_app="llm"})``
``concurrency_stable``  running + waiting, averaged over 1 s points of the KPA's stable window
``concurrency_panic``   the same over its panic window
``gateway_pending``     requests held at the gateway for the target, not yet sent
                        to a replica: the activation signal for scale from zero
                        (``spec.scaleToZero.activationQuery``; see below)
=====================  ========================================================

**Activation signals online** (requests that exist while no replica does; a
gateway must *hold* them for scale from zero to lose nothing):

- the KIS-S twin gateway: ``sum(kis_gateway_pending_requests{{sel}})``;
- Knative's activator buffers requests for a revision at zero and reports
  them to its autoscaler; KEDA's HTTP add-on interceptor holds them and
  reports its pending queue per host to its scaler;
- the Gateway API inference extension's endpoint picker exports
  ``inference_pool_average_queue_size`` (per pool: requests queued in the
  model servers) and ``inference_objective_running_requests``
  (``inference_model_running_requests`` before v1); only its flow-control
  layer, where enabled, holds requests while no endpoint is ready (check the
  metric names of the release you run);
- Envoy: ``envoy_cluster_upstream_rq_pending_active{envoy_cluster_name=...}``
  counts requests waiting for an upstream connection;
- ingress-nginx: ``sum(rate(nginx_ingress_controller_requests{ingress="..."}[1m]))``
  sees requests arrive, but answers 503 while no endpoint exists: it can
  activate, it does not hold.
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
REQUEST_PROMPT_TOKENS_HIST = "vllm:request_prompt_tokens"
REQUEST_GENERATION_TOKENS_HIST = "vllm:request_generation_tokens"
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
#: Per-request token counts (prompt, generation): vLLM's 1-2-5 buckets (``build_1_2_5_buckets``, here up to 10,000).
REQUEST_TOKEN_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

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

# Snapshot keys of the per-pod view and of scale from zero (see the module docstring).
REPLICAS_REPORTING = "replicas_reporting"
REPLICAS_PENDING = "replicas_pending"
CONCURRENCY_STABLE = "concurrency_stable"
CONCURRENCY_PANIC = "concurrency_panic"
GATEWAY_PENDING = "gateway_pending"
GATEWAY_METRIC = "kis_gateway_pending_requests"

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
    per distinct value of those labels, and ``{pod_by}`` (``namespace, pod``
    and those labels). Empty when the signal has no batched form.
    ``rename`` renames matcher labels inside ``{sel}`` only (the result series
    still carry the original names), for series that call a label otherwise
    (kube-state-metrics names a Deployment ``owner_name``).
    """

    name: str
    promql: str
    unit: str
    help: str
    grouped: str = ""
    absent: float = math.nan  #: the value when the query succeeds but returns no series for a target
    rename: tuple[tuple[str, str], ...] = ()


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


# ------------------------------------------------------------------ GPU (dcgm-exporter)
#: How GPU series find a target's pods (``--gpu-join``; deploy/README.md, "GPU utilisation").
GPU_JOINS: tuple[str, ...] = ("serving-pods", "kube-state-metrics", "labels")
DEFAULT_GPU_JOIN = "serving-pods"


def dcgm_by_pod(metric: str = GPU_UTIL) -> str:
    """dcgm-exporter's series with the GPU's workload as ``namespace`` and ``pod``, whichever way they were scraped.

    dcgm-exporter is a DaemonSet that labels each GPU with the pod using it
    (``pod``, ``namespace``, ``container``). Scraped through a ServiceMonitor
    without ``honorLabels``, Prometheus renames those ``exported_pod`` and
    ``exported_namespace`` (``pod``/``namespace`` become the exporter's own);
    scraped directly or with ``honorLabels`` they keep their names. The
    ``label_replace`` calls copy an ``exported_*`` value over when there is
    one and leave the series alone otherwise; a GPU no pod uses keeps the
    exporter's own pod and matches no target.
    """
    return (f'label_replace(label_replace({metric}, "namespace", "$1", "exported_namespace", "(.+)"), '
            f'"pod", "$1", "exported_pod", "(.+)")')


def gpu_by_pod(metric: str = GPU_UTIL) -> str:
    """Mean over each pod's GPUs, one series per (namespace, pod)."""
    return f"avg by (namespace, pod) ({dcgm_by_pod(metric)})"


def ksm_pod_deployment(selector: str = "") -> str:
    """kube-state-metrics' pod -> ReplicaSet -> Deployment chain: one series (value 1) per pod with ``namespace``, ``pod``, ``deployment``.

    ``selector`` (without braces) filters ``kube_replicaset_owner``, on which the Deployment's name is ``owner_name``.
    """
    owners = f'kube_replicaset_owner{{owner_kind="Deployment"{"," + selector if selector else ""}}}'
    return ('max by (namespace, pod, deployment) ('
            'label_replace(kube_pod_owner{owner_kind="ReplicaSet"}, "replicaset", "$1", "owner_name", "(.+)") '
            '* on (namespace, replicaset) group_left(deployment) '
            f'max by (namespace, replicaset, deployment) (label_replace({owners}, "deployment", "$1", "owner_name", "(.+)")))')


def gpu_utilization_signal(join: str = DEFAULT_GPU_JOIN) -> Signal:
    """The ``gpu_utilization`` signal: mean GPU utilisation over the target's pods (0..100), joined the ``join`` way.

    * ``serving-pods``: the pods whose serving series (``vllm:num_requests_running``) the
      target's selector matches, by exact ``namespace`` and ``pod``: works with any selector;
      needs the serving series to carry ``namespace`` and ``pod`` (a PodMonitor or pod
      discovery adds them).
    * ``kube-state-metrics``: the pods a ReplicaSet of the target Deployment owns
      (``kube_pod_owner``, ``kube_replicaset_owner``); for serving series without a
      ``pod`` label; the selector may only use ``namespace`` and ``deployment``.
    * ``labels``: the GPU series carry the selector's labels themselves (the KIS-S stub
      scraped as a serving pod, or a relabeling that adds them).
    """
    help_ = "mean GPU utilisation over the target's pods (0..100)"
    if join == "serving-pods":
        pods = "group by ({pod_by}) (" + _series(RUNNING) + ")"
        joined = f"{pods} * on (namespace, pod) group_left() {gpu_by_pod()}"
        return Signal("gpu_utilization", unit="percent", help=help_, promql="avg(" + joined.replace("{pod_by}", "namespace, pod") + ")",
                      grouped="avg by ({by}) (" + joined + ")")
    if join == "kube-state-metrics":
        joined = f"{ksm_pod_deployment('{sel}')} * on (namespace, pod) group_left() {gpu_by_pod()}"
        joined = joined.replace("{", "{{").replace("}", "}}").replace("{{sel}}", "{sel}")
        return Signal("gpu_utilization", unit="percent", help=help_, promql=f"avg({joined})", grouped=f"avg by ({{by}}) ({joined})",
                      rename=(("deployment", "owner_name"),))
    if join == "labels":
        return Signal("gpu_utilization", unit="percent", help=help_, **_aggregate("avg", _series(GPU_UTIL)))
    raise ValueError(f"unknown GPU join {join!r}; use one of {', '.join(GPU_JOINS)}")


SIGNALS: tuple[Signal, ...] = (
    Signal("requests_running", unit="requests", help="requests in the running batch, all replicas", **_aggregate("sum", _series(RUNNING))),
    Signal("requests_waiting", unit="requests", help="requests queued for admission, all replicas", **_aggregate("sum", _series(WAITING))),
    Signal("kv_cache_usage", unit="fraction", help="mean KV-cache usage over replicas (0..1)", **_aggregate("avg", _series(KV_USAGE))),
    gpu_utilization_signal(DEFAULT_GPU_JOIN),
    Signal("request_rate", unit="req/s", help="completed requests per second over the window", **_rate_signal(REQUEST_SUCCESS)),
    Signal("request_rate_long", unit="req/s", help="completed requests per second over the long window", **_rate_signal(REQUEST_SUCCESS, "{long_window}")),
    Signal("prompt_token_rate", unit="tokens/s", help="prompt tokens prefilled per second", **_rate_signal(PROMPT_TOKENS)),
    Signal("generation_token_rate", unit="tokens/s", help="tokens generated per second", **_rate_signal(GENERATION_TOKENS)),
    Signal("ttft_p95", unit="s", help="p95 time to first token over the window", **_quantile_signal(0.95, TTFT_HIST)),
    Signal("tpot_p95", unit="s", help="p95 inter-token latency over the window", **_quantile_signal(0.95, ITL_HIST)),
    Signal("e2e_p95", unit="s", help="p95 end-to-end latency over the window", **_quantile_signal(0.95, E2E_HIST)),
    Signal("queue_time_p95", unit="s", help="p95 queue time over the window", **_quantile_signal(0.95, QUEUE_HIST)),
)



def signals_with_gpu_join(join: str = DEFAULT_GPU_JOIN) -> tuple[Signal, ...]:
    """:data:`SIGNALS` with ``gpu_utilization`` joined the ``join`` way (see :func:`gpu_utilization_signal`)."""
    gpu = gpu_utilization_signal(join)
    return tuple(gpu if s.name == gpu.name else s for s in SIGNALS)


SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
KUBERNETES_KEYS: tuple[str, ...] = (REPLICAS_DESIRED, REPLICAS_READY, REPLICAS_STARTING)


def _concurrency_signal(name: str, window: str, help: str) -> Signal:
    inner = f"sum({_series(RUNNING)}) + sum({_series(WAITING)})"
    grouped = f"sum by ({{by}}) ({_series(RUNNING)}) + sum by ({{by}}) ({_series(WAITING)})"
    return Signal(name, f"avg_over_time(({inner})[{window}:1s])", "requests", help, f"avg_over_time(({grouped})[{window}:1s])")


#: Read only where a policy or spec asks (:func:`wanted_signals`) or an override names them.
ON_DEMAND_SIGNALS: tuple[Signal, ...] = (
    Signal(REPLICAS_REPORTING, unit="pods", help="pods with a sample of the serving gauges", absent=0.0,
           **_aggregate("count", _series(RUNNING))),
    Signal(REPLICAS_PENDING, "", "pods", "pods in phase Pending (no default query)"),
    _concurrency_signal(CONCURRENCY_STABLE, "{stable_window}", "running + waiting averaged over the stable window"),
    _concurrency_signal(CONCURRENCY_PANIC, "{panic_window}", "running + waiting averaged over the panic window"),
    Signal(GATEWAY_PENDING, "", "requests", "requests held at the gateway (no default query: spec.scaleToZero.activationQuery)"),
)
ALL_SIGNALS: tuple[Signal, ...] = SIGNALS + ON_DEMAND_SIGNALS
ALL_SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in ALL_SIGNALS)
SIGNALS_BY_NAME: Mapping[str, Signal] = {s.name: s for s in ALL_SIGNALS}
ON_DEMAND_NAMES: frozenset[str] = frozenset(s.name for s in ON_DEMAND_SIGNALS)

#: Knative's default stable and panic windows (``window``, 10% ``panic-window-percentage``), seconds.
DEFAULT_WINDOWS: Mapping[str, float] = {"stable_window": 60.0, "panic_window": 6.0}


def wanted_signals(policy: object) -> tuple[str, ...]:
    """The on-demand signals a policy reads (those of its ``required_signals`` and ``reads``)."""
    names = tuple(getattr(policy, "required_signals", ()) or ()) + tuple(getattr(policy, "reads", ()) or ())
    return tuple(dict.fromkeys(n for n in names if n in ON_DEMAND_NAMES))


def policy_windows(policy: object) -> dict[str, float]:
    """The named windows a policy's on-demand signals are computed over (Knative's defaults otherwise)."""
    return {**DEFAULT_WINDOWS, **dict(getattr(policy, "windows", {}) or {})}


def prometheus_duration(seconds: float) -> str:
    """Render seconds as a Prometheus duration (``60`` -> ``"60s"``)."""
    return f"{int(round(seconds))}s"


def render_promql(
    signal: Signal,
    selector: str,
    window_s: float = DEFAULT_WINDOW_S,
    long_window_s: float = DEFAULT_LONG_WINDOW_S,
    by: Sequence[str] = (),
    windows: Mapping[str, float] | None = None,
) -> str:
    """The concrete query for ``signal`` on the series matched by ``selector``.

    With ``by`` (label names), the batched form: one result series per
    distinct value of those labels, carrying them (see :attr:`Signal.grouped`).
    ``windows`` fills named window placeholders (``{stable_window}``, ``{panic_window}``).
    """
    durations = {"window": prometheus_duration(window_s), "long_window": prometheus_duration(long_window_s)}
    durations.update({k: prometheus_duration(v) for k, v in {**DEFAULT_WINDOWS, **dict(windows or {})}.items()})
    if not signal.promql:
        raise ValueError(f"signal {signal.name!r} has no default query; give it in the target's overrides")
    if not by:
        return signal.promql.format(sel=selector, **durations)
    if not signal.grouped:
        raise ValueError(f"signal {signal.name!r} has no grouped (batched) PromQL form")
    pod_by = ", ".join(dict.fromkeys(("namespace", "pod", *by)))
    return signal.grouped.format(sel=selector, by=", ".join(by), pod_by=pod_by, **durations)


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
