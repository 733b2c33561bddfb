"""``kis calibrate``: from a deployment's Prometheus history to a calibration, a cluster file and a workload.

Reads the history (:mod:`simulator.calibration.history`), fits the engine
efficiency (:mod:`simulator.calibration.engine_fit`) and the start-up
(:mod:`simulator.calibration.coldstart`), and writes, into one folder:

- ``calibration.json``: :class:`~simulator.profiles.roofline.CalibrationParams`
  for the cluster's engine, with the fit's errors;
- ``cluster.yaml``: the cluster (GPU, model, engine, that calibration, start-up),
  for ``kis simulate --cluster``, ``kis evaluate --cluster``, ``kis train --cluster``;
- ``workload.csv``: the observed traffic per bin (``--format per-minute``);
- ``report.json``: everything above in numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from simulator.calibration.coldstart import StartupFit, fit_startup
from simulator.calibration.engine_fit import EngineFit, fit_engine
from simulator.calibration.history import HistoryError, PrometheusHistory, TrafficBin, gpu_model_name, read_pod_times, read_traffic, read_windows
from simulator.cluster.file import ClusterSection, write_cluster_file
from simulator.profiles import get_gpu, load_calibration, load_shape
from simulator.workloads.aggregate import write_aggregate_csv


@dataclass(frozen=True)
class CalibrateRequest:
    """What to read and how to fit it (times in unix seconds, durations in seconds)."""

    prometheus_url: str
    namespace: str
    deployment: str
    start_s: float
    end_s: float
    step_s: float = 60.0
    workload_bin_s: float = 60.0
    gpu: str | None = None
    model: str = "llama-8b"
    engine: str = "paged"
    max_batched_tokens: int = 2048
    base_calibration: tuple[str, ...] = ()
    held_out_fraction: float = 0.25
    deployment_label: str = "deployment"
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s:
            raise ValueError("the history window is empty: --since must be positive")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"--held-out must be in (0, 1), got {self.held_out_fraction}")


@dataclass(frozen=True)
class CalibrateResult:
    gpu: str
    gpu_source: str
    engine: EngineFit
    startup: StartupFit
    traffic: list[TrafficBin]
    windows: int
    pods: list[str]
    files: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict:
        fit = self.engine
        requests = sum(b.requests for b in self.traffic)
        span = sum(b.seconds for b in self.traffic)
        return {
            "gpu": self.gpu, "gpu_source": self.gpu_source, "pods": self.pods, "windows": self.windows,
            "engine_fit": {"compute_scale": fit.compute_scale, "memory_scale": fit.memory_scale, "fit_windows": fit.fit_windows,
                           "held_out_windows": fit.held_out_windows, "fit_error": fit.fit_error, "held_out_error": fit.held_out_error,
                           "params": {k: getattr(fit.params, k) for k in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "kernel_us")}},
            "startup": asdict(self.startup) | {"lifecycle": self.startup.lifecycle_fields()},
            "workload": {"bins": len(self.traffic), "requests": requests, "mean_rate_rps": requests / span if span else math.nan,
                         "mean_prompt_tokens": sum(b.prompt_tokens for b in self.traffic) / requests if requests else math.nan,
                         "mean_output_tokens": sum(b.generated_tokens for b in self.traffic) / requests if requests else math.nan},
            "files": self.files,
        }


def _resolve_gpu(request: CalibrateRequest, client: PrometheusHistory, matchers: dict[str, str]) -> tuple[str, str]:
    if request.gpu:
        return get_gpu(request.gpu).name, "--gpu"
    name = gpu_model_name(client, matchers, request.end_s, request.end_s - request.start_s)
    if name:
        try:
            return get_gpu(name).name, f"DCGM modelName {name!r}"
        except ValueError:
            pass
    return "H100", "default (no known DCGM modelName; give --gpu)"


def calibrate_cluster(request: CalibrateRequest, out: Path, client: PrometheusHistory | None = None) -> CalibrateResult:
    """Read, fit and write (see the module docstring); :class:`HistoryError` or ``ValueError`` with one line on failure."""
    shape = load_shape(request.model)
    base = load_calibration(request.base_calibration)
    own = client is None
    client = client or PrometheusHistory(request.prometheus_url, request.timeout_s)
    try:
        matchers = {"namespace": request.namespace, request.deployment_label: request.deployment}
        windows = read_windows(client, matchers, request.start_s, request.end_s, request.step_s)
        gpu, gpu_source = _resolve_gpu(request, client, matchers)
        try:
            engine = fit_engine(windows, get_gpu(gpu), shape, base, engine=request.engine, max_batched_tokens=request.max_batched_tokens,
                                held_out_fraction=request.held_out_fraction)
        except ValueError as exc:
            raise HistoryError(f"{request.namespace}/{request.deployment}: {exc}; widen --since or shorten --step") from exc
        pods = sorted({w.pod for w in windows})
        pod_times = read_pod_times(client, request.namespace, request.deployment, request.start_s, request.end_s, extra_pods=pods)
        traffic = read_traffic(client, matchers, request.start_s, request.end_s, request.workload_bin_s)
    finally:
        if own:
            client.close()
    defaults = ClusterSection()
    startup = fit_startup(pod_times, image_pull_cached_s=defaults.image_pull_cached_s, image_pull_s=defaults.image_pull_s)
    result = CalibrateResult(gpu, gpu_source, engine, startup, traffic, len(windows), sorted({p.pod for p in pod_times} | set(pods)))
    return replace(result, files=_write(request, result, out))


def _finite(value: object) -> object:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _write(request: CalibrateRequest, result: CalibrateResult, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.fromtimestamp(request.end_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    span_h = (request.end_s - request.start_s) / 3600.0
    provenance = f"kis calibrate: {request.prometheus_url} {request.namespace}/{request.deployment}, {span_h:.2f} h to {when}"
    fit = result.engine
    params = replace(fit.params, source=provenance, fit={
        "date": dt.date.today().isoformat(), "windows": {"fit": fit.fit_windows, "held_out": fit.held_out_windows},
        "mape": {"fit": {k: round(v, 4) for k, v in fit.fit_error.items()}, "held_out": {k: round(v, 4) for k, v in fit.held_out_error.items()}},
        "scales": {"compute": round(fit.compute_scale, 4), "memory": round(fit.memory_scale, 4)}})
    calibration = out / "calibration.json"
    calibration.write_text(params.to_json() + "\n")
    section = ClusterSection(gpu=result.gpu, model=request.model, engine=request.engine, calibration=(calibration.name,),
                             **result.startup.lifecycle_fields())
    cluster = write_cluster_file(section, out / "cluster.yaml", f"{provenance}\nGPU from {result.gpu_source}; start-up from {result.startup.pods} pod(s).")
    workload = write_aggregate_csv([(b.start_s, b.seconds, b.requests, b.prompt_tokens, b.generated_tokens) for b in result.traffic], out / "workload.csv")
    files = {"calibration": str(calibration), "cluster": str(cluster), "workload": str(workload), "report": str(out / "report.json")}
    (out / "report.json").write_text(json.dumps(_finite(replace(result, files=files).report()), indent=2) + "\n")
    return files
