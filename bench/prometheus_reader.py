"""Prometheus read cost: batched queries vs one query set per target.

Starts a real Prometheus (the test harness's, scrape interval 5 s) on a fake
exporter with N single-pod targets (gauges, counters and one histogram each)
and times :meth:`PrometheusReader.read` for all N targets at once (batched:
one query per signal) against reading the targets one by one (12 queries
each; timed on a sample and scaled to N).

    .venv/bin/python bench/prometheus_reader.py [--targets 1000] [--out bench/results/prometheus_reader.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller import signals as sig  # noqa: E402
from controller.prometheus import PrometheusReader, TargetQuery  # noqa: E402
from tests.prom_harness import ExporterTarget, FakeExporter, start_prometheus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--unbatched-sample", type=int, default=50, help="targets read one by one (scaled to --targets)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "prometheus_reader.md")
    args = parser.parse_args()

    exporter = FakeExporter().start()
    pods = [ExporterTarget(f"ns{i % 10}", f"llm-{i}", f"llm-{i}-0") for i in range(args.targets)]
    for i, pod in enumerate(pods):
        exporter.set_gauge(sig.RUNNING, i % 17, pod)
        exporter.set_gauge(sig.WAITING, i % 5, pod)
        exporter.set_gauge(sig.KV_USAGE, (i % 10) / 10, pod)
        exporter.set_gauge(sig.GPU_UTIL, i % 100, pod)
        exporter.set_counter_rate(sig.REQUEST_SUCCESS, 1 + i % 3, pod)
        exporter.set_counter_rate(sig.PROMPT_TOKENS, 100 + i, pod)
        exporter.set_counter_rate(sig.GENERATION_TOKENS, 10 + i, pod)
        exporter.set_histogram_rate(sig.ITL_HIST, [0.02, 0.03, 0.2], 1.0, pod)
    targets = [TargetQuery(f"{p.namespace}/{p.deployment}", p.matchers) for p in pods]
    try:
        with tempfile.TemporaryDirectory() as tmp, start_prometheus(Path(tmp), exporter, scrape_interval_s=5) as prom:
            prom.wait_for_samples(f'{sig.REQUEST_SUCCESS}{{pod="{pods[0].pod}"}}', 3, timeout_s=60)
            reader = PrometheusReader(prom.url, window_s=10, long_window_s=15)
            series = prom.query_value("count({__name__=~\"vllm:.*|DCGM_.*\"})")
            batched = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                report = reader.read_report(targets)
                batched.append(time.perf_counter() - start)
            assert report.queries == len(sig.SIGNALS) and not report.errors
            finite = sum(v == v for snap in report.snapshots.values() for v in snap.values())
            sample = targets[: args.unbatched_sample]
            start = time.perf_counter()
            for t in sample:
                reader.read([t])
            unbatched = (time.perf_counter() - start) / len(sample) * len(targets)
    finally:
        exporter.stop()

    median = statistics.median(batched)
    lines = [
        "# Prometheus reader: batched vs per-target queries",
        "",
        f"- date: {dt.date.today().isoformat()}; host: {platform.machine()}, Python {platform.python_version()}; Prometheus 2.42 on loopback",
        f"- command: `.venv/bin/python bench/prometheus_reader.py --targets {args.targets}`",
        f"- {args.targets} targets (one pod each), {int(series)} exported series; {finite} finite snapshot values of {args.targets * len(sig.SIGNALS)}",
        "",
        "| read | queries | wall time |",
        "|---|---:|---:|",
        f"| batched, all targets (median of {args.repeats}) | {len(sig.SIGNALS)} | {median * 1000:.0f} ms (min {min(batched) * 1000:.0f} ms) |",
        f"| one target at a time (scaled from {len(sample)}) | {len(sig.SIGNALS) * args.targets} | {unbatched * 1000:.0f} ms |",
        "",
        f"Batched reads are {unbatched / median:.1f}x faster here.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
