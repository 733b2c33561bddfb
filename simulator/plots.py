"""PNG plots of simulated runs (matplotlib, Agg backend; nothing is shown)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulator.results import SimulationResult  # noqa: E402


def _per_minute(times: np.ndarray, values: np.ndarray | None, duration_s: float, q: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute count (``values`` None), or the ``q`` quantile of ``values`` per minute."""
    minutes = max(1, int(np.ceil(duration_s / 60.0)))
    index = np.clip((times // 60).astype(int), 0, minutes - 1)
    x = np.arange(minutes) + 0.5
    if values is None:
        return x, np.bincount(index, minlength=minutes).astype(float) / 60.0
    out = np.full(minutes, np.nan)
    order = np.argsort(index, kind="stable")
    sorted_index, sorted_values = index[order], values[order]
    bounds = np.searchsorted(sorted_index, np.arange(minutes + 1))
    for m in range(minutes):
        chunk = sorted_values[bounds[m] : bounds[m + 1]]
        if len(chunk):
            out[m] = np.percentile(chunk, q)
    return x, out


def plot_run(result: SimulationResult, out_dir: Path, *, arrivals: np.ndarray | None = None) -> list[Path]:
    """Request rate, latency against the SLO, queue length and replicas over time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    req = result.requests
    paths = []
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    x, rate = _per_minute(arrivals if arrivals is not None else req.arrival_s, None, result.duration_s)
    ax.plot(x, rate, color="tab:blue")
    ax.set_ylabel("requests/s")
    ax.set_title(f"{result.name}: request rate (per-minute mean)")
    ax = axes[1]
    x, ttft = _per_minute(req.arrival_s, req.ttft_s, result.duration_s, 95)
    _, tpot = _per_minute(req.arrival_s, req.tpot_s, result.duration_s, 95)
    ax.plot(x, ttft * 1000, label="TTFT p95", color="tab:orange")
    ax.axhline(result.slo.ttft_s * 1000, color="tab:orange", ls="--", lw=1, label="TTFT SLO")
    ax.plot(x, tpot * 1000, label="TPOT p95", color="tab:green")
    ax.axhline(result.slo.tpot_s * 1000, color="tab:green", ls="--", lw=1, label="TPOT SLO")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("latency by arrival minute against the SLO")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    t = np.array(result.timeline.t) / 60.0
    waiting = [s.get("requests_waiting", np.nan) for s in result.snapshots]
    running = [s.get("requests_running", np.nan) for s in result.snapshots]
    if len(waiting) == len(t):
        ax.plot(t, waiting, label="waiting", color="tab:red")
        ax.plot(t, running, label="running", color="tab:purple", alpha=0.7)
    ax.set_ylabel("requests")
    ax.set_title("queue and running batch (all replicas)")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    tl = result.timeline
    ax.step(t, tl.desired, where="post", label="desired", color="black")
    ax.step(t, tl.ready, where="post", label="ready", color="tab:green")
    ax.step(t, tl.starting, where="post", label="starting", color="tab:orange")
    ax.set_ylabel("replicas")
    ax.set_xlabel("minutes")
    ax.set_title("replicas")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out_dir / "run.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def plot_replicas(results: Sequence[SimulationResult], path: Path, title: str = "ready replicas over time") -> Path:
    """Ready replicas of several runs (e.g. policies) on one axis."""
    fig, ax = plt.subplots(figsize=(10, 4))
    for result in results:
        ax.step(np.array(result.timeline.t) / 60.0, result.timeline.ready, where="post", label=result.name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("ready replicas")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
