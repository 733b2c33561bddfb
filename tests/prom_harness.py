"""A real Prometheus server scraping a fake vLLM/DCGM exporter, for tests.

Use it from a test module by importing the fixtures (pytest finds fixtures
imported into a test module)::

    from tests.prom_harness import TARGET_A, TARGET_B, prom_exporter, prometheus  # noqa: F401

    def test_something(prometheus):
        prometheus.exporter.set_gauge(signals.RUNNING, 3, TARGET_A)
        prometheus.exporter.set_counter_rate(signals.REQUEST_SUCCESS, 2.0, TARGET_A)
        prometheus.exporter.set_histogram_rate(signals.TTFT_HIST, [0.1, 0.3], 5.0, TARGET_A)
        prometheus.wait_for_samples(f'{signals.RUNNING}{{pod="{TARGET_A.pod}"}}', 2)
        value = prometheus.query_value('sum(vllm:num_requests_running{deployment="llama-a"})')

Fixtures (both module-scoped; the test module shares one server, ~3-7 s to start):

* ``prom_exporter`` -> :class:`FakeExporter`, an HTTP exporter on a free
  loopback port. Every series carries the labels ``namespace``,
  ``deployment`` and ``pod`` of an :class:`ExporterTarget` (two ready-made:
  :data:`TARGET_A`, :data:`TARGET_B`; make more for extra pods). Gauges are
  set; counters and histograms grow *linearly in time* at a rate the test
  sets, so Prometheus' ``rate()`` and ``histogram_quantile()`` have exact
  expected values. Series exist only once a test sets them.
* ``prometheus`` -> :class:`PrometheusServer`: ``/usr/bin/prometheus`` (or
  ``$KIS_PROMETHEUS_BIN``) on a free loopback port with a temporary TSDB,
  ``scrape_interval``/``evaluation_interval`` 1 s, ``honor_labels: true``,
  scraping the exporter (job ``exporter``). It returns once the exporter's
  first scrape is queryable. Skips the test cleanly if the binary is absent.
  ``.url``; ``.exporter``; ``.add_scrape_target("127.0.0.1:PORT", labels)``
  adds a scrape target through file service discovery (job ``extra``) and
  waits until it is scraped (~5 s: Prometheus batches discovery updates);
  with ``honor_labels=False`` (job ``extra-target-labels``) a scraped label
  that clashes with a target label is renamed ``exported_<name>``, as through
  a ServiceMonitor without ``honorLabels``;
  ``.query(promql)``, ``.query_value(promql)``, ``.wait_until(promql, predicate)``,
  ``.wait_for_samples(selector, n)``.

``start_prometheus(workdir, ...)`` is the same thing as a context manager,
for a scope other than the module. :class:`TextExporter` serves a fixed
exposition text (series shaped exactly like another exporter's: dcgm-exporter,
kube-state-metrics).

Prometheus' ``rate()`` needs two samples in its window and extrapolates to
the window's edges, so use short windows (e.g. 5 s) and wait until the
window is covered with samples (``wait_for_samples(selector, window_s + 1)``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.utils import floatToGoString

from controller import signals as sig

LABELS = ("namespace", "deployment", "pod")
GAUGES = (sig.RUNNING, sig.WAITING, sig.KV_USAGE, sig.GPU_UTIL, sig.FB_USED)
COUNTERS = (sig.PROMPT_TOKENS, sig.GENERATION_TOKENS, sig.REQUEST_SUCCESS)
SCRAPE_INTERVAL_S = 1


@dataclass(frozen=True)
class ExporterTarget:
    """The labels of one pod's series."""

    namespace: str
    deployment: str
    pod: str

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.namespace, self.deployment, self.pod)

    @property
    def matchers(self) -> dict[str, str]:
        """The controller's default selector for this pod's deployment."""
        return {"namespace": self.namespace, "deployment": self.deployment}


TARGET_A = ExporterTarget("default", "llama-a", "llama-a-0")
TARGET_B = ExporterTarget("team-b", "llama-b", "llama-b-0")


@dataclass
class _Linear:
    """``base + slope * (now - t0)``: a value that grows at a set rate."""

    base: float
    slope: float
    t0: float

    def at(self, now: float) -> float:
        return self.base + self.slope * (now - self.t0)

    def retarget(self, now: float, slope: float, add: float = 0.0) -> None:
        self.base, self.slope, self.t0 = self.at(now) + add, slope, now


class FakeExporter:
    """vLLM- and DCGM-named series with values the test sets (see the module docstring)."""

    def __init__(
        self,
        buckets: Mapping[str, Sequence[float]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.buckets = {k: tuple(v) for k, v in (buckets or sig.HISTOGRAM_BUCKETS).items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._gauges: dict[tuple[str, tuple[str, ...]], float] = {}
        self._counters: dict[tuple[str, tuple[str, ...]], _Linear] = {}
        # per series: one _Linear per bucket (non-cumulative, +Inf last), then the sum
        self._histograms: dict[tuple[str, tuple[str, ...]], list[_Linear]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- setting values ----------------------------------------------------
    def set_gauge(self, metric: str, value: float, target: ExporterTarget) -> None:
        with self._lock:
            self._gauges[(metric, target.labels)] = float(value)

    def set_counter_rate(self, metric: str, per_second: float, target: ExporterTarget) -> None:
        """From now on the counter grows by ``per_second`` each second."""
        self._check_counter(metric, per_second)
        with self._lock:
            now = self._clock()
            self._counters.setdefault((metric, target.labels), _Linear(0.0, 0.0, now)).retarget(now, per_second)

    def inc_counter(self, metric: str, amount: float, target: ExporterTarget) -> None:
        """Add ``amount`` to the counter now (keeping its rate)."""
        self._check_counter(metric, amount)
        with self._lock:
            now = self._clock()
            series = self._counters.setdefault((metric, target.labels), _Linear(0.0, 0.0, now))
            series.retarget(now, series.slope, add=amount)

    def set_histogram_rate(self, metric: str, samples: Sequence[float], per_second: float, target: ExporterTarget) -> None:
        """From now on each value in ``samples`` is observed ``per_second`` times a second."""
        if per_second < 0:
            raise ValueError(f"per_second must be >= 0, got {per_second}")
        counts = self.bucket_counts(metric, samples)
        with self._lock:
            now = self._clock()
            series = self._series(metric, target, now)
            for lin, count in zip(series, [*counts, sum(samples)]):
                lin.retarget(now, per_second * count)

    def observe(self, metric: str, value: float, target: ExporterTarget, count: int = 1) -> None:
        """Observe ``value`` ``count`` times now (keeping the histogram's rates)."""
        counts = self.bucket_counts(metric, [value] * count)
        with self._lock:
            now = self._clock()
            series = self._series(metric, target, now)
            for lin, c in zip(series, [*counts, value * count]):
                lin.retarget(now, lin.slope, add=c)

    def remove(self, target: ExporterTarget | None = None) -> None:
        """Drop every series of ``target`` (all series when ``None``)."""
        with self._lock:
            for store in (self._gauges, self._counters, self._histograms):
                for key in [k for k in store if target is None or k[1] == target.labels]:
                    del store[key]

    def bucket_counts(self, metric: str, samples: Sequence[float]) -> list[float]:
        """Non-cumulative counts of ``samples`` per bucket of ``metric`` (+Inf last)."""
        bounds = self._bounds(metric)
        counts = [0.0] * (len(bounds) + 1)
        for s in samples:
            counts[next((i for i, b in enumerate(bounds) if s <= b), len(bounds))] += 1
        return counts

    # -- prometheus_client Collector ---------------------------------------
    def collect(self) -> Iterator[Any]:
        with self._lock:
            now = self._clock()
            for name in sorted({m for m, _ in self._gauges}):
                fam = GaugeMetricFamily(name, f"fake {name}", labels=LABELS)
                for (m, labels), value in sorted(self._gauges.items()):
                    if m == name:
                        fam.add_metric(labels, value)
                yield fam
            for name in sorted({m for m, _ in self._counters}):
                fam = CounterMetricFamily(name, f"fake {name}", labels=LABELS)
                for (m, labels), lin in sorted(self._counters.items(), key=lambda kv: kv[0]):
                    if m == name:
                        fam.add_metric(labels, lin.at(now))
                yield fam
            for name in sorted({m for m, _ in self._histograms}):
                fam = HistogramMetricFamily(name, f"fake {name}", labels=LABELS)
                bounds = self._bounds(name)
                for (m, labels), series in sorted(self._histograms.items(), key=lambda kv: kv[0]):
                    if m != name:
                        continue
                    cumulative, buckets = 0.0, []
                    for bound, lin in zip([*bounds, math.inf], series):
                        cumulative += lin.at(now)
                        buckets.append((floatToGoString(bound), cumulative))
                    fam.add_metric(labels, buckets, sum_value=series[-1].at(now))
                yield fam

    # -- HTTP ----------------------------------------------------------------
    def start(self, host: str = "127.0.0.1") -> FakeExporter:
        """Serve ``/metrics`` on a free port of ``host``.

        Always the classic text format 0.0.4: prometheus_client 0.26 rewrites
        ``:`` to ``_`` in sample names when Prometheus negotiates OpenMetrics
        (prometheus/client_python#1177), which would rename ``vllm:*`` series.
        """
        self._server, self._thread = serve_metrics(lambda: generate_latest(self.registry), host, "fake-exporter")
        self.port = self._server.server_port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("exporter is not started")
        return f"127.0.0.1:{self.port}"

    # -- helpers -------------------------------------------------------------
    def _bounds(self, metric: str) -> tuple[float, ...]:
        if metric not in self.buckets:
            raise ValueError(f"no bucket bounds for histogram {metric!r}; known: {sorted(self.buckets)}")
        return self.buckets[metric]

    def _series(self, metric: str, target: ExporterTarget, now: float) -> list[_Linear]:
        return self._histograms.setdefault(
            (metric, target.labels), [_Linear(0.0, 0.0, now) for _ in range(len(self._bounds(metric)) + 2)]
        )

    @staticmethod
    def _check_counter(metric: str, amount: float) -> None:
        if not metric.endswith("_total"):
            raise ValueError(f"counter names end in _total, got {metric!r}")
        if amount < 0:
            raise ValueError(f"counters only grow; got {amount} for {metric!r}")


def serve_metrics(body: Callable[[], bytes], host: str, name: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``body()`` as the Prometheus text format 0.0.4 on a free port of ``host``, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            payload = body()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return server, thread


class TextExporter:
    """Serves ``/metrics`` with a text the test sets (:attr:`text`, the Prometheus text format 0.0.4)."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self._server, self._thread = serve_metrics(lambda: self.text.encode(), "127.0.0.1", "text-exporter")
        self.address = f"127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str | None:
    """The Prometheus binary to run, or ``None`` when none is installed."""
    candidate = os.environ.get("KIS_PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
    return candidate if os.access(candidate, os.X_OK) else None


class PrometheusServer:
    """A running Prometheus on loopback (see the module docstring)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        exporter: FakeExporter | None,
        scrape_interval_s: int = SCRAPE_INTERVAL_S,
    ) -> None:
        self.process = process
        self.scrape_interval_s = scrape_interval_s
        self.port = port
        self.workdir = workdir
        self.exporter = exporter
        self.url = f"http://127.0.0.1:{port}"
        self._http = httpx.Client(base_url=self.url, timeout=5.0)
        self._extra: dict[bool, list[dict[str, Any]]] = {True: [], False: []}

    def query(self, promql: str, time_s: float | None = None) -> list[dict[str, Any]]:
        """The instant-vector result of ``promql`` (at ``time_s``, default now; raises on a query error)."""
        params = {"query": promql} if time_s is None else {"query": promql, "time": f"{time_s:.3f}"}
        response = self._http.get("/api/v1/query", params=params)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def query_value(self, promql: str, time_s: float | None = None) -> float:
        """The value of the single series ``promql`` returns (NaN if none)."""
        result = self.query(promql, time_s)
        if len(result) > 1:
            raise AssertionError(f"{promql} returned {len(result)} series")
        return float(result[0]["value"][1]) if result else math.nan

    def wait_until(
        self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool] = bool, timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)``; the result, or TimeoutError."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.2)
        raise TimeoutError(f"{promql} did not satisfy the condition within {timeout_s}s; last result {result}")

    def wait_for_samples(self, selector: str, n: int, timeout_s: float = 30.0) -> None:
        """Wait until every series of ``selector`` has ``n`` samples within the last ``n`` scrape intervals."""
        self.wait_until(
            f"count_over_time({selector}[{n * self.scrape_interval_s}s])",
            lambda r: bool(r) and all(float(x["value"][1]) >= n for x in r),
            timeout_s,
        )

    def add_scrape_target(
        self, address: str, labels: Mapping[str, str] | None = None, wait: bool = True, timeout_s: float = 20.0, honor_labels: bool = True
    ) -> None:
        """Scrape ``host:port`` from now on: job ``extra`` honoring its labels, or (``honor_labels=False``) job ``extra-target-labels``."""
        self._extra[honor_labels].append({"targets": [address], "labels": dict(labels or {})})
        path = self.workdir / ("extra_targets.json" if honor_labels else "extra_target_labels.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._extra[honor_labels]))
        os.replace(tmp, path)
        if wait:
            job = "extra" if honor_labels else "extra-target-labels"
            self.wait_until(f'up{{job="{job}",instance="{address}"}} == 1', bool, timeout_s)

    def log_tail(self, chars: int = 3000) -> str:
        log = self.workdir / "prometheus.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def close(self) -> None:
        self._http.close()


def _config(exporter_address: str | None, workdir: Path, scrape_interval_s: int) -> str:
    jobs = [
        {
            "job_name": "extra",
            "honor_labels": True,
            "file_sd_configs": [{"files": [str(workdir / "extra_targets.json")], "refresh_interval": "1s"}],
        },
        {
            "job_name": "extra-target-labels",
            "honor_labels": False,
            "file_sd_configs": [{"files": [str(workdir / "extra_target_labels.json")], "refresh_interval": "1s"}],
        },
    ]
    if exporter_address:
        jobs.insert(0, {"job_name": "exporter", "honor_labels": True, "static_configs": [{"targets": [exporter_address]}]})
    config = {
        "global": {"scrape_interval": f"{scrape_interval_s}s", "evaluation_interval": f"{scrape_interval_s}s"},
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2)  # JSON is valid YAML


@contextlib.contextmanager
def start_prometheus(
    workdir: Path,
    exporter: FakeExporter | None = None,
    timeout_s: float = 30.0,
    scrape_interval_s: int = SCRAPE_INTERVAL_S,
) -> Iterator[PrometheusServer]:
    """Run Prometheus in ``workdir`` scraping ``exporter`` (already started); stop it on exit."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "extra_targets.json").write_text("[]")
    (workdir / "extra_target_labels.json").write_text("[]")
    config = workdir / "prometheus.yml"
    config.write_text(_config(exporter.address if exporter else None, workdir, scrape_interval_s))
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(process, port, workdir, exporter, scrape_interval_s)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if server._http.get("/-/ready").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout_s}s:\n{server.log_tail()}")
            time.sleep(0.1)
        if exporter is not None:
            server.wait_until('up{job="exporter"} == 1', bool, max(1.0, deadline - time.monotonic()))
        yield server
    finally:
        server.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def prom_exporter() -> Iterator[FakeExporter]:
    """A started :class:`FakeExporter` (no series until the test sets them)."""
    exporter = FakeExporter().start()
    try:
        yield exporter
    finally:
        exporter.stop()


@pytest.fixture(scope="module")
def prometheus(prom_exporter: FakeExporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A Prometheus scraping ``prom_exporter`` every second, ready to query."""
    if prometheus_binary() is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    with start_prometheus(tmp_path_factory.mktemp("prometheus"), prom_exporter) as server:
        yield server
