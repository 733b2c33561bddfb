"""The central claim, measured: the learned policy against every rule at its best-tuned setting and the oracle.

Workloads the policy never saw in training: the Azure LLM code and
conversation traces (../shared/traces/azure2023) at their native rate and at 4x,
and the five synthetic patterns. Every rule is swept over its main knob (HPA and
KPA targets, threshold levels, planner utilisation, fixed fleet sizes), so each
comparison is with that rule's best setting for the workload, not its default;
the clairvoyant oracle runs on the same cluster. Per workload the verdict asks:

1. does the learned policy reach 99% SLO attainment wherever the oracle does?
2. does any setting of any rule (the planner included) reach the learned
   policy's attainment with fewer GPU-hours?
3. are its GPU-hours within 1.2x of the oracle's (goal 1.1x)?

It writes ``bench/results/policy_benchmark.md`` (tables and the verdict),
``policy_benchmark.json`` (every aggregated row) and one cost-against-attainment
front per workload under ``bench/results/policy_benchmark/``.

    .venv/bin/python bench/policy_benchmark.py [--seeds 0,1,2,3,4] [--workers N | --ray auto] [--quick]

The rules do not depend on the artifact: after retraining, rerun only the
learned policy and keep the other rows of the last run (same seeds and grid):

    .venv/bin/python bench/policy_benchmark.py --only learned --reuse bench/results/policy_benchmark.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from controller.artifact import DEFAULT_ARTIFACT  # noqa: E402
from controller.slo import SLO  # noqa: E402
from simulator.cluster.config import ClusterConfig, NodePool  # noqa: E402
from simulator.evaluation.presets import preset_workloads, trace_workload  # noqa: E402
from simulator.evaluation.runner import ORACLE, EvaluationSetup, PolicyEntry, aggregate, evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces" / "azure2023"
OUT = REPO / "bench" / "results"
PATTERNS = ("ramp", "periodic", "random", "spike", "llm-day")

#: (policy type, knob, values, spec for a value): the sweep of each rule.
SWEEPS: tuple[tuple[str, str, tuple[float, ...], object], ...] = (
    ("planner", "targetUtilization", (0.5, 0.65, 0.8, 1.0, 1.25, 1.6), lambda v: {"type": "planner", "target_utilization": v}),
    ("hpa", "target", (2, 4, 6, 8, 12, 16), lambda v: {"type": "hpa", "metric": "requests_per_replica", "target": float(v)}),
    ("kpa", "target", (2, 4, 8, 12, 16), lambda v: {"type": "kpa", "target": float(v)}),
    ("threshold", "scaleUpTpm", (60_000, 120_000, 240_000, 480_000),
     lambda v: {"type": "threshold", "scale_up_tpm": float(v), "scale_down_tpm": v / 2}),
    ("fixed", "replicas", (1, 2, 4, 6, 8, 12, 16), lambda v: {"type": "fixed", "replicas": int(v)}),
)
QUICK = {"planner": (0.8, 1.25), "hpa": (4, 8), "kpa": (4, 8), "threshold": (240_000,), "fixed": (4, 8)}
LEARNED = "learned"


def policies(quick: bool, only: frozenset[str] | None = None, artifact: Path = DEFAULT_ARTIFACT) -> list[PolicyEntry]:
    """The line-up: the learned policy and every rule's sweep (``only``: these kinds, ``oracle`` among them)."""
    entries = [PolicyEntry(LEARNED, {"type": "learned", "artifact": str(artifact)})]
    for kind, _, values, spec in SWEEPS:
        for value in QUICK[kind] if quick else values:
            entries.append(PolicyEntry(f"{kind}@{value:g}", spec(value)))  # type: ignore[operator]
    return [e for e in entries if only is None or kind_of(e.name) in only]


def reused_rows(path: Path, seeds: list[int], rerun: frozenset[str]) -> dict[tuple[str, str], dict[str, float]]:
    """The aggregated rows of an earlier run, less the kinds being rerun; refuses other seeds."""
    data = json.loads(path.read_text())
    if data["seeds"] != seeds:
        raise SystemExit(f"error: {path} holds seeds {data['seeds']}, this run uses {seeds}")
    return {(r["policy"], r["workload"]): {k: v for k, v in r.items() if k not in ("policy", "workload")}
            for r in data["rows"] if kind_of(r["policy"]) not in rerun}


def workloads(quick: bool) -> list:
    out = []
    for name in ("code", "conv"):
        path = TRACES / f"AzureLLMInferenceTrace_{name}.csv"
        duration = 900.0 if quick else None
        out += [trace_workload(path, "azure", duration), trace_workload(path, "azure", duration, rate_scale=4.0)]
    return out + preset_workloads(PATTERNS[:2] if quick else PATTERNS, 900.0 if quick else 3600.0)


def kind_of(policy: str) -> str:
    return policy.split("@")[0]


def verdict(rows: Mapping[str, Mapping[str, float]]) -> dict[str, object]:
    """The three checks on one workload's rows (policy -> mean summary over seeds)."""
    mine, oracle = rows[LEARNED], rows[ORACLE]
    rules = {p: v for p, v in rows.items() if p not in (LEARNED, ORACLE)}
    cheaper = {p: v for p, v in rules.items() if v["slo_attainment"] >= mine["slo_attainment"] and v["gpu_hours"] < mine["gpu_hours"]}
    best_rule = min(cheaper.items(), key=lambda kv: kv[1]["gpu_hours"]) if cheaper else None
    # the best-tuned setting of each rule: the cheapest that matches the learned policy's attainment, else the most attaining
    best = {}
    for kind in dict.fromkeys(kind_of(p) for p in rules):
        settings = {p: v for p, v in rules.items() if kind_of(p) == kind}
        matching = {p: v for p, v in settings.items() if v["slo_attainment"] >= mine["slo_attainment"]}
        pick = min(matching.items(), key=lambda kv: kv[1]["gpu_hours"]) if matching else max(settings.items(), key=lambda kv: kv[1]["slo_attainment"])
        best[kind] = pick[0]
    ratio = mine["gpu_hours"] / oracle["gpu_hours"] if oracle["gpu_hours"] > 0 else math.inf
    return {
        "attains_99_where_oracle_does": oracle["slo_attainment"] < 0.99 or mine["slo_attainment"] >= 0.99,
        "no_rule_cheaper_at_its_attainment": best_rule is None,
        "cheaper_rule": best_rule[0] if best_rule else None,
        "gpu_hours_over_oracle": ratio,
        "within_1_2x_oracle": ratio <= 1.2,
        "best_tuned": best,
    }


def front(workload: str, rows: Mapping[str, Mapping[str, float]], path: Path) -> None:
    """GPU-hours against SLO attainment: a line per rule over its sweep, the learned policy and the oracle as points."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, *_ in SWEEPS:
        points = sorted((v["gpu_hours"], v["slo_attainment"]) for p, v in rows.items() if kind_of(p) == kind)
        if points:
            ax.plot([x for x, _ in points], [100 * y for _, y in points], "o-", label=kind, alpha=0.8)
    for name, marker in ((LEARNED, "*"), (ORACLE, "X")):
        ax.plot(rows[name]["gpu_hours"], 100 * rows[name]["slo_attainment"], marker, markersize=14, label=name)
    ax.axhline(99, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(f"{workload}: cost against attainment (mean over seeds)")
    lows = [100 * v["slo_attainment"] for v in rows.values()]
    ax.set_ylim(max(min(lows) - 1, 0), 100.2)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _row(name: str, v: Mapping[str, float]) -> str:
    return (f"| {name} | {_pct(v['slo_attainment'])} | {1000 * v['ttft_p95_s']:.0f} ms | {1000 * v['tpot_p95_s']:.0f} ms | "
            f"{v['gpu_hours']:.2f} | {v['scale_events']:.1f} |")


def _shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it."""
    return str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)


def report(per: Mapping, names: list[str], args: argparse.Namespace, seeds: list[int], seconds: float, executor: str) -> str:
    lines = ["# Policy benchmark: the learned policy against best-tuned rules and the oracle", "",
             f"Command: `.venv/bin/python bench/policy_benchmark.py --seeds {args.seeds}{' --quick' if args.quick else ''}"
             f"{'' if args.artifact == DEFAULT_ARTIFACT else ' --artifact ' + _shown(args.artifact)}`  ",
             f"Date: {dt.date.today().isoformat()}; artifact: `{_shown(args.artifact)}`; cluster: 16 x H100 (two 8-GPU nodes), "
             f"llama-8b, replicas 1..16, 15 s interval; SLO TTFT 500 ms, TPOT 50 ms; seeds {seeds}; {executor}; wall time {seconds:.0f} s"
             f"{' (the rules and oracle from an earlier run of the same grid, `--reuse`)' if args.reuse else ''}.",
             "", "Traces and patterns are never seen in training (the policy trains on randomised traffic, "
             "configs/train/ppo.yaml). Each rule is swept over its knob; *best tuned* is, per workload, its cheapest setting that "
             "reaches the learned policy's attainment, else its most attaining one.", "", "## Verdict", "",
             "| workload | learned | oracle | GPU-h / oracle | 99% where oracle | no rule cheaper | best rules at learned's attainment |",
             "|---|---:|---:|---:|:---:|:---:|---|"]
    details = []
    for workload in names:
        rows = {p: v for (p, w), v in per.items() if w == workload}
        v = verdict(rows)
        mine, oracle = rows[LEARNED], rows[ORACLE]
        best = ", ".join(f"{p} {rows[p]['gpu_hours']:.2f} h / {_pct(rows[p]['slo_attainment'])}" for p in v["best_tuned"].values())  # type: ignore[union-attr]
        lines.append(f"| {workload} | {_pct(mine['slo_attainment'])}, {mine['gpu_hours']:.2f} h | {_pct(oracle['slo_attainment'])}, "
                     f"{oracle['gpu_hours']:.2f} h | {v['gpu_hours_over_oracle']:.2f}x | {'yes' if v['attains_99_where_oracle_does'] else 'NO'} | "
                     f"{'yes' if v['no_rule_cheaper_at_its_attainment'] else 'NO (' + str(v['cheaper_rule']) + ')'} | {best} |")
        details += [f"## {workload}", "", f"![front](policy_benchmark/front_{workload}.png)", "",
                    "| policy | SLO attainment | TTFT p95 | TPOT p95 | GPU-hours | scale events |", "|---|---:|---:|---:|---:|---:|"]
        details += [_row(p, rows[p]) for p in sorted(rows, key=lambda p: (p != LEARNED, p == ORACLE, p))]
        details.append("")
    return "\n".join(lines + [""] + details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--ray", default=None, help="run on Ray: auto, or ray://HOST:10001")
    parser.add_argument("--quick", action="store_true", help="a small grid on 15-minute windows (a smoke run, not the record)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/policy_benchmark.md (out/ with --quick)")
    parser.add_argument("--only", default=None, help="run only these kinds (comma-separated: learned, planner, hpa, kpa, "
                        "threshold, fixed, oracle)")
    parser.add_argument("--reuse", type=Path, default=None, help="take the other kinds' rows from this earlier JSON output")
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT, help="the learned policy's artifact folder "
                        "(default: the shipped one)")
    args = parser.parse_args()
    only = frozenset(args.only.split(",")) if args.only else None
    args.out = args.out or (REPO / "out" / "policy_benchmark_quick.md" if args.quick else OUT / "policy_benchmark.md")
    seeds = [int(s) for s in args.seeds.split(",")]
    setup = EvaluationSetup(
        cluster=ClusterConfig(pools=(NodePool(name="h100", gpu="H100", gpus_per_node=8, initial_nodes=2, max_nodes=2),), model="llama-8b"),
        slo=SLO(), interval_s=15.0, min_replicas=1, max_replicas=16, initial_replicas=2,
    )
    from simulator.executor import make_executor

    entries, loads = policies(args.quick, only, args.artifact), workloads(args.quick)
    with_oracle = only is None or ORACLE in only
    reused = reused_rows(args.reuse, seeds, only or frozenset()) if args.reuse else {}
    executor = make_executor(args.workers, args.ray)
    total = len(loads) * len(seeds) * (len(entries) + with_oracle)
    done = [0]
    started = time.perf_counter()

    def progress(policy: str, workload: str, seed: int) -> None:
        done[0] += 1
        if done[0] % 25 == 0 or done[0] == total:
            print(f"  {done[0]}/{total} runs ({time.perf_counter() - started:.0f} s)", flush=True)

    with executor:
        records = evaluate(entries, loads, seeds, setup, include_oracle=with_oracle, keep_results=False, on_run=progress,
                           executor=executor) if entries else []
    seconds = time.perf_counter() - started
    per = {**reused, **aggregate(records)}
    if args.reuse:
        seconds += json.loads(args.reuse.read_text()).get("seconds", 0.0)
    names = [w.name for w in loads]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows_json = {"seeds": seeds, "seconds": seconds, "rows": [{"policy": p, "workload": w, **v} for (p, w), v in per.items()]}
    if any((LEARNED, w) not in per for w in names):  # a partial run (--only without learned): rows for a later --reuse
        args.out.with_suffix(".json").write_text(json.dumps(rows_json, indent=1, default=float) + "\n")
        print(f"rows written to {args.out.with_suffix('.json')}; no learned rows, so no report")
        return
    figures = args.out.parent / "policy_benchmark"
    figures.mkdir(parents=True, exist_ok=True)
    for workload in names:
        front(workload, {p: v for (p, w), v in per.items() if w == workload}, figures / f"front_{workload}.png")
    described = "serial" if executor.name == "serial" else f"{executor.name} with {getattr(executor, 'workers', '?')} workers"
    text = report(per, names, args, seeds, seconds, described)
    args.out.write_text(text + "\n")
    rows_json["verdict"] = {w: verdict({p: v for (p, x), v in per.items() if x == w}) for w in names}
    args.out.with_suffix(".json").write_text(json.dumps(rows_json, indent=1, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    main()
