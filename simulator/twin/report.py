"""Report of a closed-loop run: replicas and latency over time (Markdown + PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.slo import SLO
from simulator.loadgen.replay import summarize_results
from simulator.twin.run import TwinResult


def write_twin_report(result: TwinResult, out_dir: Path, slo: SLO = SLO()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    t = np.array([p[0] for p in result.timeline])
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    axes[0].step(t, [p[1] for p in result.timeline], where="post", label="desired", color="black")
    axes[0].step(t, [p[2] for p in result.timeline], where="post", label="ready", color="tab:green")
    axes[0].set_ylabel("replicas")
    axes[0].legend()
    ok = [r for r in result.requests if r.ok]
    sent = np.array([r.sent_s for r in result.requests])
    axes[1].hist(sent, bins=max(10, int(sent.max() if len(sent) else 10)), color="tab:blue")
    axes[1].set_ylabel("requests sent / s")
    axes[2].scatter([r.sent_s for r in ok], [r.ttft_s * 1000 for r in ok], s=4, label="TTFT", color="tab:orange")
    axes[2].scatter([r.sent_s for r in ok], [r.tpot_s * 1000 for r in ok], s=4, label="TPOT", color="tab:green")
    axes[2].axhline(slo.ttft_s * 1000, color="tab:orange", ls="--", lw=1)
    axes[2].axhline(slo.tpot_s * 1000, color="tab:green", ls="--", lw=1)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("ms")
    axes[2].set_xlabel("seconds")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "twin.png", dpi=100)
    plt.close(fig)
    summary = summarize_results(result.requests, slo)
    lines = ["# Local closed loop", "", "Emulated Kubernetes API, stub replicas, real Prometheus, the KIScaler loop, a load spike.", "",
             f"Requests: {int(summary['requests'])}, ok {int(summary['ok'])}, SLO attainment {summary['slo_attainment']:.2%}, "
             f"TTFT p95 {summary['ttft_p95_s'] * 1000:.0f} ms, TPOT p95 {summary['tpot_p95_s'] * 1000:.0f} ms, errors {summary['errors'] or 'none'}.",
             f"Replicas: max desired {max(p[1] for p in result.timeline)}, max ready {max(p[2] for p in result.timeline)}, final {result.timeline[-1][1]}.", "",
             "![twin](twin.png)", "", "## Decisions that changed the replicas", ""]
    lines += [f"- {t_s:.1f} s: {text}" for t_s, text in result.decisions if "NoChange" not in text]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
