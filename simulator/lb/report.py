"""Tables and plots of the load-balancing experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulator.lb.experiment import RouterResult


def write_lb_report(results: Sequence[RouterResult], out_dir: Path, curves: dict[str, Path] | None = None, notes: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    routers = list(dict.fromkeys(r.router for r in results))
    lines = ["# Load balancing: learned routers against heuristics", "", notes, "",
             "| scenario | router | cumulative reward | mean response | p95 response | mean queue | SLO violations (> 2 s) | requests per server |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.scenario} | {r.router} | {r.reward:.0f} | {r.mean_response_s:.2f} s | {r.p95_response_s:.2f} s | {r.mean_queue:.1f} | {r.slo_violation_rate:.1%} | {list(r.per_server)} |")
    heat = np.full((len(routers), len(scenarios)), np.nan)
    for r in results:
        heat[routers.index(r.router), scenarios.index(r.scenario)] = r.slo_violation_rate
    fig, ax = plt.subplots(figsize=(1.6 * len(scenarios) + 2, 0.5 * len(routers) + 1.5))
    image = ax.imshow(heat, cmap="Reds", vmin=0, vmax=1)
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=20, fontsize=8)
    ax.set_yticks(range(len(routers)), routers, fontsize=8)
    for (i, j), value in np.ndenumerate(heat):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, label="SLO violation rate")
    ax.set_title("SLO violations (response > 2 s)")
    fig.tight_layout()
    fig.savefig(out_dir / "slo_heatmap.png", dpi=110)
    plt.close(fig)
    for scenario in scenarios:
        fig, ax = plt.subplots(figsize=(8, 4))
        for r in results:
            if r.scenario == scenario and r.response_times:
                times = np.sort(np.array(r.response_times))
                ax.plot(times, np.linspace(0, 1, len(times)), label=r.router)
        ax.axvline(2.0, color="red", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("response time (s)")
        ax.set_ylabel("CDF")
        ax.set_title(f"{scenario}: response-time distribution")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / f"response_{scenario}.png", dpi=100)
        plt.close(fig)
    lines += ["", "![SLO violations](slo_heatmap.png)", ""] + [f"![{s}](response_{s}.png)" for s in scenarios]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4))
        for name, path in curves.items():
            rows = [line.split(",") for line in path.read_text().splitlines()[2:] if line]
            if rows:
                rewards = np.array([float(row[0]) for row in rows])
                ax.plot(np.cumsum([int(row[1]) for row in rows]), rewards, label=name, alpha=0.8)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode reward")
        ax.set_title("learning curves")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "learning_curves.png", dpi=100)
        plt.close(fig)
        lines += ["", "![learning curves](learning_curves.png)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
