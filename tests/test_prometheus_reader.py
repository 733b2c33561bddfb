"""PrometheusReader against a real Prometheus scraping a fake vLLM/DCGM exporter.

The exporter's counters and histogram buckets grow linearly in time, so the
expected rates are the rates the test sets and the expected quantiles are
``controller.signals.histogram_quantile`` of the bucket counts per second.
"""

from __future__ import annotations

import json
import math
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from controller import signals as sig
from controller.prometheus import MetricsUnavailable, PrometheusReader, TargetQuery, alternation_selector, exact_selector, plan_queries, promql_string
from tests.prom_harness import TARGET_A, TARGET_B, ExporterTarget, FakeExporter, PrometheusServer, free_port, prom_exporter, prometheus  # noqa: F401 (fixtures)

needs_prometheus = pytest.mark.prometheus

WINDOW_S = 4
LONG_WINDOW_S = 6
A1 = ExporterTarget(TARGET_A.namespace, TARGET_A.deployment, "llama-a-1")
C = ExporterTarget("default", "llama-c", "llama-c-0")  # non-finite gauges only
DOT = ExporterTarget("default", "llama.v1", "dot-0")
DOT_LOOKALIKE = ExporterTarget("default", "llamaXv1", "dot-1")
WEIRD = ExporterTarget("default", 'we"ird\\dep.*', "weird-0")
MISSING = {"namespace": "default", "deployment": "no-such-deployment"}

TTFT_A0 = [0.05, 0.2, 0.3, 0.7, 1.5]  # observed 2x per second each
TTFT_A1 = [0.1, 0.4]  # observed 1x per second each
TTFT_B = [0.03, 0.09]  # observed 4x per second each
ITL_A0 = [0.02, 0.03, 0.06, 0.3]


@pytest.fixture(scope="module")
def stack(prometheus: PrometheusServer) -> PrometheusServer:
    ex = prometheus.exporter
    assert ex is not None
    for target, running, waiting, kv, gpu in ((TARGET_A, 3, 1, 0.25, 60), (A1, 4, 2, 0.75, 80), (TARGET_B, 5, 0, 0.9, 95)):
        ex.set_gauge(sig.RUNNING, running, target)
        ex.set_gauge(sig.WAITING, waiting, target)
        ex.set_gauge(sig.KV_USAGE, kv, target)
        ex.set_gauge(sig.GPU_UTIL, gpu, target)
    for target, success, prompt, gen in ((TARGET_A, 2.0, 300.0, 50.0), (A1, 1.0, 200.0, 30.0), (TARGET_B, 0.5, 100.0, 20.0)):
        ex.set_counter_rate(sig.REQUEST_SUCCESS, success, target)
        ex.set_counter_rate(sig.PROMPT_TOKENS, prompt, target)
        ex.set_counter_rate(sig.GENERATION_TOKENS, gen, target)
    ex.set_histogram_rate(sig.TTFT_HIST, TTFT_A0, 2.0, TARGET_A)
    ex.set_histogram_rate(sig.TTFT_HIST, TTFT_A1, 1.0, A1)
    ex.set_histogram_rate(sig.TTFT_HIST, TTFT_B, 4.0, TARGET_B)
    ex.set_histogram_rate(sig.ITL_HIST, ITL_A0, 3.0, TARGET_A)
    ex.set_histogram_rate(sig.E2E_HIST, [1.2, 4.0], 1.0, TARGET_A)
    ex.set_histogram_rate(sig.QUEUE_HIST, [0.01, 0.4], 1.0, TARGET_A)
    ex.set_gauge(sig.KV_USAGE, math.nan, C)
    ex.set_gauge(sig.GPU_UTIL, math.inf, C)
    ex.set_gauge(sig.RUNNING, 11, DOT)
    ex.set_gauge(sig.RUNNING, 13, DOT_LOOKALIKE)
    ex.set_gauge(sig.RUNNING, 17, WEIRD)
    # rate() over the long window is exact once the window is full of samples
    prometheus.wait_for_samples(sig.REQUEST_SUCCESS, LONG_WINDOW_S + 1)
    prometheus.wait_for_samples(sig.RUNNING, 2)
    return prometheus


@pytest.fixture
def reader(stack: PrometheusServer) -> Iterator[PrometheusReader]:
    with PrometheusReader(stack.url, window_s=WINDOW_S, long_window_s=LONG_WINDOW_S) as r:
        yield r


def _targets() -> list[TargetQuery]:
    return [
        TargetQuery("a", TARGET_A.matchers),
        TargetQuery("b", TARGET_B.matchers),
        TargetQuery("c", C.matchers),
        TargetQuery("dot", DOT.matchers),
        TargetQuery("weird", WEIRD.matchers),
        TargetQuery("missing", MISSING),
    ]


def _combined(metric: str, parts: list[tuple[list[float], float]], ex: FakeExporter) -> list[float]:
    counts = [0.0] * (len(sig.HISTOGRAM_BUCKETS[metric]) + 1)
    for samples, per_second in parts:
        for i, c in enumerate(ex.bucket_counts(metric, samples)):
            counts[i] += c * per_second
    return counts


@needs_prometheus
def test_gauges_are_aggregated_per_target(reader: PrometheusReader) -> None:
    snap = reader.read(_targets())
    assert set(snap) == {"a", "b", "c", "dot", "weird", "missing"}
    # target a has two pods: sums for request counts, means for usage
    assert snap["a"]["requests_running"] == 3 + 4
    assert snap["a"]["requests_waiting"] == 1 + 2
    assert snap["a"]["kv_cache_usage"] == pytest.approx((0.25 + 0.75) / 2)
    assert snap["a"]["gpu_utilization"] == pytest.approx((60 + 80) / 2)
    assert snap["b"]["requests_running"] == 5
    assert snap["b"]["requests_waiting"] == 0
    assert snap["b"]["kv_cache_usage"] == pytest.approx(0.9)
    assert snap["b"]["gpu_utilization"] == pytest.approx(95)


@needs_prometheus
def test_rates_per_target(reader: PrometheusReader) -> None:
    snap = reader.read(_targets())
    assert snap["a"]["request_rate"] == pytest.approx(2.0 + 1.0, rel=0.02)
    assert snap["a"]["request_rate_long"] == pytest.approx(2.0 + 1.0, rel=0.02)
    assert snap["a"]["prompt_token_rate"] == pytest.approx(300 + 200, rel=0.02)
    assert snap["a"]["generation_token_rate"] == pytest.approx(50 + 30, rel=0.02)
    assert snap["b"]["request_rate"] == pytest.approx(0.5, rel=0.02)
    assert snap["b"]["prompt_token_rate"] == pytest.approx(100, rel=0.02)
    assert snap["b"]["generation_token_rate"] == pytest.approx(20, rel=0.02)


@needs_prometheus
def test_quantiles_match_histogram_quantile_of_bucket_rates(reader: PrometheusReader, stack: PrometheusServer) -> None:
    ex = stack.exporter
    assert ex is not None
    snap = reader.read(_targets())
    ttft_a = sig.histogram_quantile(0.95, sig.TTFT_BUCKETS, _combined(sig.TTFT_HIST, [(TTFT_A0, 2.0), (TTFT_A1, 1.0)], ex))
    ttft_b = sig.histogram_quantile(0.95, sig.TTFT_BUCKETS, _combined(sig.TTFT_HIST, [(TTFT_B, 4.0)], ex))
    itl_a = sig.histogram_quantile(0.95, sig.ITL_BUCKETS, _combined(sig.ITL_HIST, [(ITL_A0, 3.0)], ex))
    e2e_a = sig.histogram_quantile(0.95, sig.E2E_BUCKETS, _combined(sig.E2E_HIST, [([1.2, 4.0], 1.0)], ex))
    queue_a = sig.histogram_quantile(0.95, sig.QUEUE_BUCKETS, _combined(sig.QUEUE_HIST, [([0.01, 0.4], 1.0)], ex))
    assert snap["a"]["ttft_p95"] == pytest.approx(ttft_a, rel=1e-6)
    assert snap["b"]["ttft_p95"] == pytest.approx(ttft_b, rel=1e-6)
    assert snap["a"]["tpot_p95"] == pytest.approx(itl_a, rel=1e-6)
    assert snap["a"]["e2e_p95"] == pytest.approx(e2e_a, rel=1e-6)
    assert snap["a"]["queue_time_p95"] == pytest.approx(queue_a, rel=1e-6)
    assert ttft_a != ttft_b  # the targets are told apart
    assert math.isnan(snap["b"]["tpot_p95"])  # b exports no inter-token histogram


@needs_prometheus
def test_absent_and_non_finite_values_are_nan_with_every_key_present(reader: PrometheusReader) -> None:
    snap = reader.read(_targets())
    for key in ("c", "missing"):
        assert list(snap[key]) == list(sig.SIGNAL_NAMES)
        assert all(math.isnan(v) for v in snap[key].values()), snap[key]
    assert math.isnan(snap["b"]["e2e_p95"])


@needs_prometheus
def test_label_values_match_literally(reader: PrometheusReader) -> None:
    """Regex metacharacters, quotes and backslashes in values neither break the query nor over-match."""
    snap = reader.read(_targets())
    assert snap["dot"]["requests_running"] == 11  # not 11 + 13 ("." is not a wildcard)
    assert snap["weird"]["requests_running"] == 17


class CountingSession(requests.Session):
    """A requests session that records the PromQL of every query it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if url.endswith("/api/v1/query"):
            self.queries.append(kwargs["params"]["query"])
        return super().request(method, url, *args, **kwargs)


@needs_prometheus
def test_batching_sends_one_query_per_signal(stack: PrometheusServer) -> None:
    session = CountingSession()
    reader = PrometheusReader(stack.url, window_s=WINDOW_S, long_window_s=LONG_WINDOW_S, session=session)
    at = time.time() - 1.0
    report = reader.read_report(_targets(), time_s=at)
    assert len(session.queries) == len(sig.SIGNALS) == report.queries
    assert all("deployment, namespace) (" in q for q in session.queries)
    # each target's values are those of its plain, ungrouped query (same evaluation time)
    for target in _targets()[:3]:
        batched = report.snapshots[target.key]
        for signal in sig.SIGNALS:
            plain = stack.query_value(sig.render_promql(signal, exact_selector(target.matchers), WINDOW_S, LONG_WINDOW_S), at)
            plain = plain if math.isfinite(plain) else math.nan
            got = batched[signal.name]
            assert (math.isnan(plain) and math.isnan(got)) or got == pytest.approx(plain, rel=1e-9), (target.key, signal.name)


@needs_prometheus
def test_targets_with_other_label_keys_or_windows_get_their_own_batch(stack: PrometheusServer) -> None:
    session = CountingSession()
    reader = PrometheusReader(stack.url, window_s=WINDOW_S, long_window_s=LONG_WINDOW_S, session=session)
    targets = [
        *_targets(),
        TargetQuery("by-deployment", {"deployment": TARGET_B.deployment}),
        TargetQuery("by-deployment-2", {"deployment": TARGET_A.deployment}),
        TargetQuery("slow-window", TARGET_A.matchers, window_s=WINDOW_S + 1, long_window_s=LONG_WINDOW_S),
    ]
    snap = reader.read(targets)
    assert len(session.queries) == 3 * len(sig.SIGNALS)
    assert snap["by-deployment"]["requests_running"] == 5
    assert snap["by-deployment-2"]["requests_running"] == 7
    assert snap["slow-window"]["request_rate"] == pytest.approx(3.0, rel=0.02)


@needs_prometheus
def test_overrides_get_their_own_queries(stack: PrometheusServer) -> None:
    session = CountingSession()
    reader = PrometheusReader(stack.url, window_s=WINDOW_S, long_window_s=LONG_WINDOW_S, session=session)
    overrides = {
        "requests_running": "sum(vllm:num_requests_running{{sel}}) * 10",
        "requests_waiting": "vector(42)",
        "gpu_utilization": "scalar(vector(7))",
        "request_rate": "sum(rate(vllm:request_success_total{{sel}}[{window}])) * 60",
    }
    targets = [TargetQuery("a", TARGET_A.matchers, overrides=overrides), TargetQuery("b", TARGET_B.matchers)]
    snap = reader.read(targets)
    assert len(session.queries) == len(sig.SIGNALS) + len(overrides)
    assert snap["a"]["requests_running"] == 70
    assert snap["a"]["requests_waiting"] == 42
    assert snap["a"]["gpu_utilization"] == 7
    assert snap["a"]["request_rate"] == pytest.approx(180, rel=0.02)
    assert f"[{WINDOW_S}s]" in next(q for q in session.queries if q.endswith("* 60"))
    # b and a's other signals still come from the batched queries
    assert snap["b"]["requests_running"] == 5
    assert snap["b"]["gpu_utilization"] == pytest.approx(95)
    assert snap["a"]["kv_cache_usage"] == pytest.approx(0.5)


@needs_prometheus
def test_override_returning_several_series_is_nan(reader: PrometheusReader) -> None:
    target = TargetQuery("a", TARGET_A.matchers, overrides={"requests_running": "vllm:num_requests_running{{sel}}"})
    with capture_logs() as logs:
        report = reader.read_report([target])
    assert math.isnan(report.snapshots["a"]["requests_running"])
    assert [e.signal for e in report.errors] == ["requests_running"]
    assert "2 series" in report.errors[0].message
    assert any(entry["log_level"] == "error" for entry in logs)


@needs_prometheus
def test_bad_override_query_only_blanks_its_signal(reader: PrometheusReader) -> None:
    target = TargetQuery("a", TARGET_A.matchers, overrides={"requests_waiting": "sum("})
    with capture_logs() as logs:
        report = reader.read_report([target, TargetQuery("b", TARGET_B.matchers)])
    assert math.isnan(report.snapshots["a"]["requests_waiting"])
    assert report.snapshots["a"]["requests_running"] == 7
    assert report.snapshots["b"]["requests_waiting"] == 0
    (error,) = report.errors
    assert (error.signal, error.status, error.targets) == ("requests_waiting", 400, ("a",))
    assert "parse error" in error.message
    failed = [e for e in logs if e["event"] == "prometheus_query_failed"]
    assert failed and failed[0]["log_level"] == "error" and failed[0]["signal"] == "requests_waiting"


@needs_prometheus
def test_bad_batched_query_blanks_the_signal_for_all_its_targets(stack: PrometheusServer) -> None:
    broken = sig.Signal("broken", "sum(", "1", "a broken query", grouped="sum by ({by}) (")
    signals = (*sig.SIGNALS[:1], broken)
    reader = PrometheusReader(stack.url, window_s=WINDOW_S, long_window_s=LONG_WINDOW_S, signals=signals)
    with capture_logs():
        report = reader.read_report(_targets()[:2])
    assert [(e.signal, e.targets) for e in report.errors] == [("broken", ("a", "b"))]
    assert math.isnan(report.snapshots["a"]["broken"]) and math.isnan(report.snapshots["b"]["broken"])
    assert report.snapshots["a"]["requests_running"] == 7


def test_unreachable_prometheus_raises_metrics_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    reader = PrometheusReader(url, retries=0, timeout_s=2)
    with pytest.raises(MetricsUnavailable) as info:
        reader.read([TargetQuery("a", TARGET_A.matchers)])
    assert info.value.url == url
    assert url in str(info.value)


class RecordingServer:
    """A loopback HTTP(S) server answering every query with ``status``/``body``; records requests."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.status = status
        self.body = body if body is not None else {"status": "success", "data": {"resultType": "vector", "result": []}}
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append((self.path, dict(self.headers)))
                data = json.dumps(outer.body).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.httpd.server_port}"


@pytest.mark.parametrize("status", [500, 401])
def test_http_errors_raise_metrics_unavailable(status: int) -> None:
    with RecordingServer(status=status, body={"status": "error", "error": "boom"}) as server:
        reader = PrometheusReader(server.url(), retries=0)
        with pytest.raises(MetricsUnavailable, match=f"HTTP {status}"):
            reader.read([TargetQuery("a", TARGET_A.matchers)])


def test_unavailable_503_is_retried_then_raises() -> None:
    with RecordingServer(status=503, body={"status": "error", "error": "overloaded"}) as server:
        reader = PrometheusReader(server.url(), retries=1)
        with pytest.raises(MetricsUnavailable):
            reader.read([TargetQuery("a", TARGET_A.matchers)])
    assert len(server.requests) == 2


def test_bearer_token_is_sent_with_every_query() -> None:
    with RecordingServer() as server:
        reader = PrometheusReader(server.url(), bearer_token="s3cret")
        snap = reader.read([TargetQuery("a", TARGET_A.matchers), TargetQuery("b", TARGET_B.matchers)])
    assert all(math.isnan(v) for v in snap["a"].values())
    assert len(server.requests) == len(sig.SIGNALS)
    assert {headers.get("Authorization") for _, headers in server.requests} == {"Bearer s3cret"}


def test_bearer_token_file_is_reread_on_every_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    with RecordingServer() as server:
        reader = PrometheusReader(server.url(), bearer_token="ignored", bearer_token_file=token)
        reader.read([TargetQuery("a", TARGET_A.matchers)])
        token.write_text("second")
        reader.read([TargetQuery("a", TARGET_A.matchers)])
    seen = [headers.get("Authorization") for _, headers in server.requests]
    assert seen[0] == "Bearer first" and seen[-1] == "Bearer second"


def test_no_authorization_header_without_token() -> None:
    with RecordingServer() as server:
        PrometheusReader(server.url()).read([TargetQuery("a", TARGET_A.matchers)])
    assert all("Authorization" not in headers for _, headers in server.requests)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_is_verified_against_the_ca_file(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with RecordingServer(tls=context) as server:
        url = server.url("https")
        PrometheusReader(url, ca_file=cert).read([TargetQuery("a", TARGET_A.matchers)])
        assert len(server.requests) == len(sig.SIGNALS)
        with pytest.raises(MetricsUnavailable, match="SSL"):
            PrometheusReader(url, retries=0).read([TargetQuery("a", TARGET_A.matchers)])
        with pytest.warns(Warning):  # urllib3's InsecureRequestWarning
            PrometheusReader(url, verify=False).read([TargetQuery("a", TARGET_A.matchers)])


# -- pure planning and validation (no Prometheus) ------------------------------


def test_a_thousand_targets_cost_one_query_per_signal() -> None:
    targets = [TargetQuery(f"ns{i % 7}/llm{i}", {"namespace": f"ns{i % 7}", "deployment": f"llm{i}"}) for i in range(1000)]
    plans = plan_queries(targets, 60, 300)
    assert len(plans) == len(sig.SIGNALS)
    assert sorted(k for k in plans[0].targets) == sorted(t.key for t in targets)


def test_selectors_quote_and_escape() -> None:
    assert promql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert alternation_selector({"deployment": ["x"]}) == 'deployment="x"'
    assert alternation_selector({"deployment": ["b.v1", "a(1)"], "namespace": ["n"]}) == (
        'deployment=~"a\\\\(1\\\\)|b\\\\.v1",namespace="n"'
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matchers": {}}, "must not be empty"),
        ({"matchers": {"bad-label": "x"}}, "not a valid Prometheus label name"),
        ({"matchers": {"le": "1"}}, "reserved"),
        ({"matchers": {"namespace": "n"}, "overrides": {"nope": "up"}}, "unknown override"),
        ({"matchers": {"namespace": "n"}, "overrides": {"request_rate": " "}}, "non-empty PromQL"),
        ({"matchers": {"namespace": "n"}, "window_s": 0.5}, "window_s must be >= 1"),
    ],
)
def test_target_query_rejects_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        TargetQuery("ns/x", **kwargs)
    assert "ns/x" in str(info.value)


def test_duplicate_target_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate target keys"):
        plan_queries([TargetQuery("a", {"namespace": "n"}), TargetQuery("a", {"namespace": "m"})], 60, 300)


def test_reader_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        PrometheusReader("prometheus:9090")
    with pytest.raises(ValueError, match="ca_file"):
        PrometheusReader("https://p:9090", ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="window_s"):
        PrometheusReader("http://p:9090", window_s=0)


def test_empty_read_sends_nothing() -> None:
    assert PrometheusReader(f"http://127.0.0.1:{free_port()}").read([]) == {}


@needs_prometheus
def test_on_demand_signals_on_real_prometheus(reader: PrometheusReader, stack: PrometheusServer) -> None:
    """Pods reporting (a count: 0 without series), the KPA's window averages of 1 s points, and the
    activation signal from a gateway gauge shaped like the twin's, each only where a target asks."""
    ex = stack.exporter
    assert ex is not None
    ex.set_gauge(sig.GATEWAY_METRIC, 7, TARGET_B)
    stack.wait_for_samples(sig.GATEWAY_METRIC, 2)
    windows = {"stable_window": 4, "panic_window": 2}
    wants = (sig.REPLICAS_REPORTING, sig.CONCURRENCY_STABLE, sig.CONCURRENCY_PANIC)
    activation = {sig.GATEWAY_PENDING: f"sum({sig.GATEWAY_METRIC}{{{{sel}}}})"}
    snap = reader.read([TargetQuery("a", TARGET_A.matchers, wants=wants, windows=windows),
                        TargetQuery("b", TARGET_B.matchers, activation, wants=wants, windows=windows),
                        TargetQuery("missing", MISSING, wants=wants, windows=windows),
                        TargetQuery("plain", TARGET_A.matchers)])
    assert snap["a"][sig.REPLICAS_REPORTING] == 2 and snap["b"][sig.REPLICAS_REPORTING] == 1
    assert snap["missing"][sig.REPLICAS_REPORTING] == 0  # no series: no pod reports (not NaN)
    # Constant gauges: the averages over any window are the sums, running + waiting.
    assert snap["a"][sig.CONCURRENCY_STABLE] == pytest.approx(3 + 1 + 4 + 2) and snap["a"][sig.CONCURRENCY_PANIC] == pytest.approx(10)
    assert snap["b"][sig.CONCURRENCY_PANIC] == pytest.approx(5)
    assert math.isnan(snap["missing"][sig.CONCURRENCY_STABLE])
    assert snap["b"][sig.GATEWAY_PENDING] == 7 and sig.GATEWAY_PENDING not in snap["a"]
    assert list(snap["plain"]) == list(sig.SIGNAL_NAMES)  # nothing on demand unless asked
