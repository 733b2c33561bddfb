"""The evaluation report: Markdown tables and PNG plots in one folder."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulator.evaluation.runner import ORACLE, RunRecord, aggregate  # noqa: E402
from simulator.evaluation.sweep import SweepPoint  # noqa: E402

TABLE_KEYS = (
    ("slo_attainment", "SLO attainment"),
    ("ttft_p95_s", "TTFT p95"),
    ("ttft_p99_s", "TTFT p99"),
    ("tpot_p95_s", "TPOT p95"),
    ("e2e_p95_s", "E2E p95"),
    ("gpu_hours", "GPU-hours"),
    ("cost_usd", "cost"),
    ("scale_events", "scale events"),
    ("reaction_time_s", "burst reaction"),
)


def _fmt(key: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if key == "slo_attainment":
        return f"{value:.2%}"
    if key == "reaction_time_s":
        return f"{value:.0f} s"
    if key.endswith("_s"):
        return f"{value * 1000:.0f} ms"
    if key == "cost_usd":
        return f"${value:.2f}"
    if key == "scale_events":
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(rows: Mapping[str, Mapping[str, float]], first: str = "policy") -> str:
    header = f"| {first} | " + " | ".join(label for _, label in TABLE_KEYS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_KEYS)
    lines = [header, rule]
    for name, summary in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(k, summary.get(k, math.nan)) for k, _ in TABLE_KEYS) + " |")
    return "\n".join(lines)


def overall(records: Sequence[RunRecord]) -> dict[str, dict[str, float]]:
    """Per policy: the mean over workloads of the per-workload means over seeds."""
    per = aggregate(records)
    policies = list(dict.fromkeys(r.policy for r in records))
    out: dict[str, dict[str, float]] = {}
    for policy in policies:
        rows = [v for (p, _), v in per.items() if p == policy]
        out[policy] = {k: float(np.nanmean([r.get(k, math.nan) for r in rows])) if any(math.isfinite(r.get(k, math.nan)) for r in rows) else math.nan
                       for k, _ in TABLE_KEYS}
    return out


def _first_seed(records: Sequence[RunRecord], workload: str) -> list[RunRecord]:
    seeds = sorted({r.seed for r in records if r.workload == workload})
    return [r for r in records if r.workload == workload and r.seed == seeds[0] and r.result is not None]


def plot_workload(records: Sequence[RunRecord], workload: str, out_dir: Path) -> Path:
    """Replicas, p95 TTFT against the SLO and cost per minute, one line per policy (first seed)."""
    runs = _first_seed(records, workload)
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for record in runs:
        res = record.result
        assert res is not None
        style = {"ls": "--", "color": "black"} if record.policy == ORACLE else {}
        t = np.array(res.timeline.t) / 60.0
        axes[0].step(t, res.timeline.ready, where="post", label=record.policy, **style)
        minutes = max(1, math.ceil(res.duration_s / 60))
        req = res.requests
        idx = np.minimum((req.arrival_s // 60).astype(int), minutes - 1)
        p95 = np.full(minutes, np.nan)
        for m in range(minutes):
            chunk = req.ttft_s[idx == m]
            if len(chunk):
                p95[m] = np.percentile(chunk, 95)
        axes[1].plot(np.arange(minutes) + 0.5, p95 * 1000, label=record.policy, **style)
        cost = np.array(res.timeline.cost_usd)
        dt = np.diff(np.array(res.timeline.t), prepend=0.0)
        per_minute = np.divide(np.diff(cost, prepend=0.0), dt, out=np.zeros_like(cost), where=dt > 0) * 60.0
        axes[2].plot(t, per_minute, label=record.policy, **style)
    if runs and runs[0].result is not None:
        axes[1].axhline(runs[0].result.slo.ttft_s * 1000, color="red", lw=1, ls=":", label="TTFT SLO")
    axes[0].set_ylabel("ready replicas")
    axes[0].set_title(f"{workload}: replicas over time")
    axes[1].set_ylabel("TTFT p95 (ms)")
    axes[1].set_yscale("log")
    axes[1].set_title("latency against the SLO (per arrival minute)")
    axes[2].set_ylabel("USD per minute")
    axes[2].set_xlabel("minutes")
    axes[2].set_title("cost per minute")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out_dir / f"workload_{workload}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_fronts(points: Sequence[SweepPoint], path: Path) -> Path:
    """Cost against SLO attainment, one line per policy type over its main knob."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for policy in dict.fromkeys(p.policy for p in points):
        mine = sorted((p for p in points if p.policy == policy), key=lambda p: p.cost_usd)
        style = {"marker": "*", "ms": 14, "ls": "none", "color": "black"} if policy == ORACLE else {"marker": "o"}
        ax.plot([p.cost_usd for p in mine], [p.slo_attainment for p in mine], label=policy, **style)
        for p in mine:
            if policy != ORACLE:
                ax.annotate(f"{p.knob_value:g}", (p.cost_usd, p.slo_attainment), fontsize=6, alpha=0.7)
    ax.set_xlabel("cost (USD, mean over workloads and seeds)")
    ax.set_ylabel("SLO attainment")
    ax.set_title("cost against SLO attainment (labels: knob value)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curve(run_dir: Path, path: Path) -> Path | None:
    """Mean evaluation reward against environment steps from a ``kis train`` folder."""
    curve = run_dir / "eval_curve.csv"
    if not curve.exists():
        return None
    rows = list(csv.DictReader(curve.open()))
    steps = [int(r["timesteps"]) for r in rows]
    mean = np.array([float(r["mean_reward"]) for r in rows])
    std = np.array([float(r["std_reward"]) for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean evaluation episode reward")
    ax.set_title(f"training curve: {run_dir.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    records: Sequence[RunRecord],
    out_dir: Path,
    *,
    title: str = "KIS-S policy evaluation",
    notes: str = "",
    sweep: Sequence[SweepPoint] = (),
    training_runs: Sequence[Path] = (),
) -> Path:
    """``report.md`` with the tables and every plot, written into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per = aggregate(records)
    workloads = list(dict.fromkeys(r.workload for r in records))
    seeds = sorted({r.seed for r in records})
    lines = [f"# {title}", "", notes, "", f"Seeds: {', '.join(map(str, seeds))}. Values are means over seeds.", ""]
    lines += ["## All workloads (mean of per-workload means)", "", markdown_table(overall(records)), ""]
    for workload in workloads:
        rows = {p: v for (p, w), v in per.items() if w == workload}
        lines += [f"## {workload}", "", markdown_table(rows), ""]
        if any(r.result is not None for r in records if r.workload == workload):
            path = plot_workload(records, workload, out_dir)
            lines += [f"![{workload}]({path.name})", ""]
    if sweep:
        path = plot_fronts(sweep, out_dir / "fronts.png")
        lines += ["## Cost against attainment", "", "Each policy's main knob swept; the oracle is the star.", "", f"![fronts]({path.name})", ""]
        lines += ["| policy | knob | value | SLO attainment | cost |", "|---|---|---:|---:|---:|"]
        lines += [f"| {p.policy} | {p.knob} | {p.knob_value:g} | {p.slo_attainment:.2%} | ${p.cost_usd:.2f} |" for p in sweep]
        lines.append("")
    for run_dir in training_runs:
        path = plot_training_curve(Path(run_dir), out_dir / f"training_{Path(run_dir).name}.png")
        if path:
            lines += [f"## Training: {Path(run_dir).name}", "", f"![training]({path.name})", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
