"""The local closed loop end to end: emulated Kubernetes, stub replicas, real Prometheus, the controller, a spike."""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from simulator.twin.report import write_twin_report
from simulator.twin.run import TwinConfig, run_twin, spike

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")
def test_spike_scales_up_latency_recovers_and_scales_down(tmp_path):
    config = TwinConfig(interval_s=2.0, stabilization_s=10.0, startup_delay_s=2.0, drain_s=30.0, max_replicas=5)
    # A fresh interpreter, as `kis twin` has: the gateway and load generator share its event loops, and the
    # state the earlier tests leave in this one (threads, a large heap to garbage-collect) would be measured too.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(run_twin, spike(duration_s=40, base=2.0, peak=16.0, start_s=8, length_s=16), config).result()
    t = np.array([p[0] for p in result.timeline])
    desired = np.array([p[1] for p in result.timeline])
    ready = np.array([p[2] for p in result.timeline])
    assert desired[t < 8].max() == 1  # before the spike: one replica
    assert desired.max() >= 3  # the spike makes the controller scale up
    peak_at = t[np.argmax(ready)]
    assert ready.max() >= 3 and 8 < peak_at < 45  # the new replicas become ready
    ok = [r for r in result.requests if r.ok]
    assert len(ok) == len(result.requests)  # nothing lost while scaling
    # Latency recovers: under the same spike, the scaled-out replicas answer faster than one replica did.
    before = [[r.ttft_s for r in ok if a <= r.sent_s < a + 2] for a in np.arange(8, peak_at, 2)]
    worst_before = max(np.percentile(w, 95) for w in before if w)
    late = [r.ttft_s for r in ok if peak_at + 2 <= r.sent_s < 24]
    windows = {float(a): round(float(np.percentile(w, 95)), 3) for a in np.arange(0, 40, 2)
               if (w := [r.ttft_s for r in ok if a <= r.sent_s < a + 2])}
    assert np.percentile(late, 95) <= worst_before or np.percentile(late, 95) < 0.5, (
        f"TTFT p95 by 2 s window: {windows}; all ready at {peak_at:.1f} s; decisions: {result.decisions}")
    assert desired[-1] < desired.max()  # after the load, replicas scale down after the stabilisation window
    assert any("ScaleDown" in text for _, text in result.decisions)
    report = write_twin_report(result, tmp_path)
    assert "Local closed loop" in report.read_text() and (tmp_path / "twin.png").exists()
