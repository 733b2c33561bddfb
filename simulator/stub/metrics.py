"""``/metrics`` of the stub: the vLLM and DCGM names, read from the engine at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from controller import signals as sig
from simulator.engine.activity import DCGM_SAMPLE_PERIOD_S, KernelActivity
from simulator.engine.metrics import Histogram
from simulator.engine.replica import ReplicaEngine

_HELP = {
    sig.TTFT_HIST: "Histogram of time to first token in seconds.",
    sig.ITL_HIST: "Histogram of inter-token latency in seconds.",
    sig.E2E_HIST: "Histogram of end to end request latency in seconds.",
    sig.QUEUE_HIST: "Histogram of time spent in WAITING phase for request.",
    sig.REQUEST_PROMPT_TOKENS_HIST: "Number of prefill tokens processed.",
    sig.REQUEST_GENERATION_TOKENS_HIST: "Number of generation tokens processed.",
}


class EngineCollector(Collector):
    """One replica's metrics, computed when Prometheus scrapes.

    ``DCGM_FI_DEV_GPU_UTIL`` is defined as dcgm-exporter's: the percent of the
    last sample period (1 s of wall time) during which the engine ran
    iterations (:mod:`simulator.engine.activity`); ``DCGM_FI_DEV_FB_USED`` is
    weights plus cached KV. ``request_tokens`` are the per-request token
    histograms (prompt, generation) the driver keeps.
    """

    def __init__(self, engine: ReplicaEngine, model_name: str, weight_bytes: float, kv_bytes_per_token: float,
                 now: Callable[[], float], activity: KernelActivity, *, period_s: float = DCGM_SAMPLE_PERIOD_S,
                 request_tokens: tuple[Histogram, Histogram] | None = None) -> None:
        self.engine = engine
        self.model_name = model_name
        self.weight_bytes = weight_bytes
        self.kv_bytes_per_token = kv_bytes_per_token
        self.now = now
        self.activity = activity
        self.period_s = period_s
        self.request_tokens = request_tokens

    def _utilisation(self) -> float:
        return self.activity.utilization(self.engine, self.now(), self.period_s)

    def collect(self) -> Iterator:
        engine, labels, values = self.engine, ["model_name"], [self.model_name]
        for name, doc, value in (
            (sig.RUNNING, "Number of requests in model execution batches.", engine.num_running),
            (sig.WAITING, "Number of requests waiting to be processed.", engine.num_waiting),
            (sig.KV_USAGE, "KV-cache usage. 1 means 100 percent usage.", engine.kv_cache_usage),
        ):
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(values, float(value))
            yield family
        sink = engine.sink
        for name, doc, value in (
            (sig.PROMPT_TOKENS, "Number of prefill tokens processed.", sink.prompt_tokens),
            (sig.GENERATION_TOKENS, "Number of generation tokens processed.", sink.generation_tokens),
            (sig.REQUEST_SUCCESS, "Count of successfully processed requests.", sink.request_success),
        ):
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            family.add_metric(values, float(value))
            yield family
        histograms = dict(sink.histograms)
        if self.request_tokens is not None:
            histograms[sig.REQUEST_PROMPT_TOKENS_HIST], histograms[sig.REQUEST_GENERATION_TOKENS_HIST] = self.request_tokens
        for name, histogram in histograms.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            family = HistogramMetricFamily(name, _HELP[name], labels=labels)
            family.add_metric(values, buckets, sum_value=histogram.total)
            yield family
        util = GaugeMetricFamily(sig.GPU_UTIL, "GPU utilization (in %).", labels=["gpu", "modelName"])
        util.add_metric(["0", self.model_name], self._utilisation())
        yield util
        used = GaugeMetricFamily(sig.FB_USED, "Framebuffer memory used (in MiB).", labels=["gpu", "modelName"])
        used.add_metric(["0", self.model_name], (self.weight_bytes + engine.kv_cached_tokens * self.kv_bytes_per_token) / 2**20)
        yield used
