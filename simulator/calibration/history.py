"""Read a deployment's history from Prometheus: vLLM windows per pod, pod start times, traffic.

Queries go to the HTTP API (``/api/v1/query_range`` and ``/api/v1/query``).
Counters and histogram sums and counts are read as raw values at the window
boundaries and differenced here, so no ``increase()`` extrapolation enters
the fit (a value that falls is a counter reset: the new value is the
increase). vLLM series are selected like the controller does, by
``namespace`` and ``deployment`` labels; pod start times come from
kube-state-metrics (``kube_pod_created``, ``kube_pod_status_scheduled_time``,
``kube_pod_status_ready_time``, and ``kube_pod_owner`` with
``kube_replicaset_owner`` to find the deployment's pods).

Every problem with the answer is a :class:`HistoryError` with one line that
says which Prometheus, which query and what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import requests

from controller import signals as sig
from simulator.calibration.engine_fit import Window

PROMPT_HIST = sig.REQUEST_PROMPT_TOKENS_HIST
GENERATION_HIST = sig.REQUEST_GENERATION_TOKENS_HIST
_DURATION = re.compile(r"^(\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


class HistoryError(ValueError):
    """Prometheus could not give the history: unreachable, refused, malformed or empty (one line)."""


def parse_duration(text: str, what: str = "duration") -> float:
    """A Prometheus duration (``90s``, ``6h``, ``1h30m``) in seconds."""
    value = text.strip()
    if not _DURATION.match(value):
        raise ValueError(f"{what}: expected a duration such as 90s, 15m, 6h or 1h30m, got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"{what}: must be positive, got {text!r}")
    return seconds


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(matchers: Mapping[str, str]) -> str:
    return ",".join(f"{k}={_quote(v)}" for k, v in matchers.items())


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray


class PrometheusHistory:
    """A minimal, strict client of the Prometheus HTTP API."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, str], query: str) -> object:
        where = f"Prometheus at {self.url}"
        try:
            response = self._http.get(self.url + path, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise HistoryError(f"{where} is unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            snippet = response.text[:80].replace("\n", " ")
            raise HistoryError(f"{where} answered {query!r} with HTTP {response.status_code} and no JSON: {snippet!r}") from exc
        if not isinstance(body, dict):
            raise HistoryError(f"{where} sent a malformed answer to {query!r}: a JSON object was expected")
        if response.status_code != 200 or body.get("status") != "success":
            raise HistoryError(f"{where} rejected {query!r}: HTTP {response.status_code}, {body.get('errorType', 'error')}: {body.get('error', body)}")
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise HistoryError(f"{where} sent a malformed answer to {query!r}: no data.result list")
        return data

    @staticmethod
    def _sample(pair: object, query: str, url: str) -> tuple[float, float]:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise HistoryError(f"Prometheus at {url} sent a malformed answer to {query!r}: a sample must be [time, \"value\"], got {pair!r}")
        try:
            return float(pair[0]), float(pair[1])
        except (TypeError, ValueError) as exc:
            raise HistoryError(f"Prometheus at {url} sent a malformed answer to {query!r}: sample {pair!r}") from exc

    def _series(self, result: list, query: str, key: str) -> list[Series]:
        out = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("metric"), dict) or key not in item:
                raise HistoryError(f"Prometheus at {self.url} sent a malformed answer to {query!r}: each series needs 'metric' and '{key}'")
            samples = item[key] if key == "values" else [item[key]]
            if not isinstance(samples, list):
                raise HistoryError(f"Prometheus at {self.url} sent a malformed answer to {query!r}: '{key}' must be a list")
            pairs = [self._sample(p, query, self.url) for p in samples]
            out.append(Series({str(k): str(v) for k, v in item["metric"].items()}, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])))
        return out

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}, query)
        if data.get("resultType") != "matrix":  # type: ignore[union-attr]
            raise HistoryError(f"Prometheus at {self.url} sent a malformed answer to {query!r}: resultType {data.get('resultType')!r}, not matrix")  # type: ignore[union-attr]
        return self._series(data["result"], query, "values")  # type: ignore[index]

    def instant(self, query: str, time_s: float) -> list[Series]:
        data = self._get("/api/v1/query", {"query": query, "time": f"{time_s:.3f}"}, query)
        if data.get("resultType") != "vector":  # type: ignore[union-attr]
            raise HistoryError(f"Prometheus at {self.url} sent a malformed answer to {query!r}: resultType {data.get('resultType')!r}, not vector")  # type: ignore[union-attr]
        return self._series(data["result"], query, "value")  # type: ignore[index]


def _grid(start: float, end: float, step: float) -> np.ndarray:
    return start + step * np.arange(int(math.floor((end - start) / step + 1e-9)) + 1)


def _per_pod(series: list[Series], grid: np.ndarray) -> dict[str, np.ndarray]:
    """Values per pod on the grid (NaN where absent)."""
    out: dict[str, np.ndarray] = {}
    for s in series:
        pod = s.labels.get("pod", "")
        row = out.setdefault(pod, np.full(len(grid), np.nan))
        index = np.searchsorted(grid, s.times - 1e-6)
        ok = (index < len(grid)) & (np.abs(grid[np.minimum(index, len(grid) - 1)] - s.times) < 1e-3)
        row[index[ok]] = np.where(np.isnan(row[index[ok]]), 0.0, row[index[ok]]) + s.values[ok]
    return out


def counter_increases(values: np.ndarray, present_at_start: bool) -> np.ndarray:
    """Increases between consecutive grid points (NaN where a point is missing); a fall is a reset."""
    v = np.asarray(values, dtype=float)
    prev = v[:-1].copy()
    if not present_at_start:  # a series that appears mid-history started from zero
        first = int(np.argmax(~np.isnan(v))) if np.any(~np.isnan(v)) else len(v)
        if 0 < first < len(v):
            prev[first - 1] = 0.0
    diff = v[1:] - prev
    return np.where(diff < 0, v[1:], diff)


COUNTERS = {
    "itl_sum": f"{sig.ITL_HIST}_sum", "itl_count": f"{sig.ITL_HIST}_count",
    "ttft_sum": f"{sig.TTFT_HIST}_sum", "ttft_count": f"{sig.TTFT_HIST}_count",
    "queue_sum": f"{sig.QUEUE_HIST}_sum", "queue_count": f"{sig.QUEUE_HIST}_count",
    "requests": sig.REQUEST_SUCCESS, "prompt_counter": sig.PROMPT_TOKENS, "generation_counter": sig.GENERATION_TOKENS,
    "prompt_sum": f"{PROMPT_HIST}_sum", "prompt_count": f"{PROMPT_HIST}_count",
    "generation_sum": f"{GENERATION_HIST}_sum", "generation_count": f"{GENERATION_HIST}_count",
}


def read_windows(client: PrometheusHistory, matchers: Mapping[str, str], start: float, end: float, step: float) -> list[Window]:
    """One :class:`Window` per pod and step of ``[start, end]``.

    Token means come from vLLM's per-request histograms ``vllm:request_prompt_tokens`` and
    ``vllm:request_generation_tokens`` (the same finished requests as the latency histograms)
    when the server exports them, else from the token counters.
    """
    sel = selector(matchers)
    grid = _grid(start, end, step)
    if len(grid) < 2:
        raise HistoryError(f"the window from {start:.0f} to {end:.0f} holds less than one step of {step:g} s")
    raw = {name: _per_pod(client.range(f"sum by (pod) ({metric}{{{sel}}})", grid[0], grid[-1], step), grid) for name, metric in COUNTERS.items()}
    if not any(raw[n] for n in ("itl_count", "ttft_count", "requests")):
        raise HistoryError(f"Prometheus at {client.url} has no vLLM series for {{{sel}}} between the window's start and end "
                           f"(queried {sig.TTFT_HIST}_count, {sig.ITL_HIST}_count, {sig.REQUEST_SUCCESS}): check --namespace and --deployment")
    gauges = {}
    for name, expr in (("running", f"sum by (pod) (avg_over_time({sig.RUNNING}{{{sel}}}[{step:g}s]))"),
                       ("busy", f"avg by (pod) (avg_over_time({sig.GPU_UTIL}{{{sel}}}[{step:g}s]))")):
        gauges[name] = _per_pod(client.range(expr, grid[0], grid[-1], step), grid)
    pods = sorted(set().union(*(raw[n].keys() for n in raw)))
    windows = []
    for pod in pods:
        inc = {}
        for name in COUNTERS:
            values = raw[name].get(pod)
            inc[name] = counter_increases(values, not math.isnan(values[0])) if values is not None else np.full(len(grid) - 1, np.nan)
        running = gauges["running"].get(pod, np.full(len(grid), np.nan))[1:]
        busy = gauges["busy"].get(pod, np.full(len(grid), np.nan))[1:] / 100.0
        has_hist = not np.all(np.isnan(inc["prompt_sum"]))
        for k in range(len(grid) - 1):
            requests_done = inc["prompt_count"][k] if has_hist else inc["requests"][k]
            prompt = inc["prompt_sum"][k] if has_hist else inc["prompt_counter"][k]
            generation = inc["generation_sum"][k] if has_hist else inc["generation_counter"][k]
            values = (requests_done, prompt, generation, inc["itl_sum"][k], inc["itl_count"][k], inc["ttft_sum"][k], inc["ttft_count"][k],
                      inc["queue_sum"][k], inc["queue_count"][k], running[k])
            if any(math.isnan(v) for v in values):
                continue
            windows.append(Window(pod, float(grid[k]), step, *(float(v) for v in values), busy=float(busy[k])))
    return windows


@dataclass(frozen=True)
class PodTimes:
    """One pod's lifecycle timestamps (unix seconds; NaN where unknown)."""

    pod: str
    created_s: float
    scheduled_s: float
    ready_s: float

    @property
    def pending_s(self) -> float:
        return self.scheduled_s - self.created_s

    @property
    def startup_s(self) -> float:
        return self.ready_s - self.scheduled_s


def _latest(series: list[Series]) -> dict[str, float]:
    return {s.labels.get("pod", ""): float(s.values[-1]) for s in series if len(s.values)}


def read_pod_times(client: PrometheusHistory, namespace: str, deployment: str, start: float, end: float, extra_pods: Sequence[str] = ()) -> list[PodTimes]:
    """Lifecycle timestamps of the deployment's pods seen by kube-state-metrics during ``[start, end]``.

    Pods are the deployment's through ``kube_pod_owner`` (ReplicaSet) and ``kube_replicaset_owner``
    (Deployment), plus ``extra_pods`` (those that export vLLM series). Readiness is
    ``kube_pod_status_ready_time`` (experimental in kube-state-metrics), else the first sample
    of ``kube_pod_status_ready{condition="true"} == 1``.
    """
    span = f"{max(1, int(math.ceil(end - start)))}s"
    ns = _quote(namespace)

    def latest(metric: str, extra: str = "") -> list[Series]:
        return client.instant(f"max_over_time({metric}{{namespace={ns}{extra}}}[{span}])", end)

    replicasets = {s.labels.get("replicaset") for s in latest("kube_replicaset_owner", f',owner_kind="Deployment",owner_name={_quote(deployment)}')}
    owners = latest("kube_pod_owner", ',owner_kind="ReplicaSet"')
    pods = {s.labels.get("pod", "") for s in owners if s.labels.get("owner_name") in replicasets} | set(extra_pods)
    created = _latest(latest("kube_pod_created"))
    scheduled = _latest(latest("kube_pod_status_scheduled_time"))
    ready = _latest(latest("kube_pod_status_ready_time"))
    missing = [p for p in pods if p not in ready]
    if missing:
        first = client.instant(f'min_over_time(timestamp(kube_pod_status_ready{{namespace={ns},condition="true"}} == 1)[{span}:])', end)
        ready |= {k: v for k, v in _latest(first).items() if k in missing}
    return [PodTimes(p, created.get(p, math.nan), scheduled.get(p, math.nan), ready.get(p, math.nan)) for p in sorted(pods) if p in created]


@dataclass(frozen=True)
class TrafficBin:
    """Finished requests and their tokens in one bin of the history, all pods together."""

    start_s: float
    seconds: float
    requests: float
    prompt_tokens: float
    generated_tokens: float


def read_traffic(client: PrometheusHistory, matchers: Mapping[str, str], start: float, end: float, bin_s: float) -> list[TrafficBin]:
    """Per-bin requests and token totals (the arrival process a replay needs; completions stand for arrivals)."""
    sel = selector(matchers)
    grid = _grid(start, end, bin_s)
    if len(grid) < 2:
        raise HistoryError(f"the window is shorter than one workload bin of {bin_s:g} s")
    totals = {}
    for name, metric in (("requests", sig.REQUEST_SUCCESS), ("prompt", sig.PROMPT_TOKENS), ("generation", sig.GENERATION_TOKENS)):
        per_pod = _per_pod(client.range(f"sum by (pod) ({metric}{{{sel}}})", grid[0], grid[-1], bin_s), grid)
        increases = [np.nan_to_num(counter_increases(v, not math.isnan(v[0]))) for v in per_pod.values()]
        totals[name] = np.sum(increases, axis=0) if increases else np.zeros(len(grid) - 1)
    return [TrafficBin(float(grid[k] - grid[0]), bin_s, float(totals["requests"][k]), float(totals["prompt"][k]), float(totals["generation"][k]))
            for k in range(len(grid) - 1)]


def gpu_model_name(client: PrometheusHistory, matchers: Mapping[str, str], end: float, span_s: float) -> str | None:
    """dcgm-exporter's ``modelName`` label of the deployment's GPUs, if exported."""
    series = client.instant(f"count by (modelName) (max_over_time({sig.GPU_UTIL}{{{selector(matchers)}}}[{max(1, int(span_s))}s]))", end)
    names = [s.labels.get("modelName") for s in series if s.labels.get("modelName")]
    return names[0] if names else None
