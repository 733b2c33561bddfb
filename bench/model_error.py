"""Latency-model error: calibrate on half of the measured H100 profile, predict the other half.

    .venv/bin/python bench/model_error.py [--out bench/results/model_error.md]

Target: MAPE at most 10% per phase on kernel_ms. The split is deterministic:
within each phase, points alternate between calibration and test.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from simulator.profiles.calibrate import calibrate, error_report
from simulator.profiles.measured import load_profile
from simulator.profiles.roofline import SpecLatencyModel
from simulator.profiles.specs import get_gpu

PROFILE = Path(__file__).resolve().parents[1].parent / "shared" / "gpu-profiles" / "h100_llama-1b.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_error.md"))
    args = parser.parse_args()
    profile = load_profile(PROFILE)
    gpu = get_gpu("H100")
    fit, test = [], []
    for phase in ("prefill", "decode"):
        points = profile.phase(phase)
        fit += points[0::2]
        test += points[1::2]
    lines = [
        "# Latency model error", "",
        "Command: `.venv/bin/python bench/model_error.py`  ",
        f"Date: {dt.date.today().isoformat()}; profile: `../shared/gpu-profiles/{PROFILE.name}` (H100, Llama-3.2-1B shape, eager HF);",
        f"calibration on {len(fit)} points (even indices per phase), test on the other {len(test)}.", "",
        "| timing | prefill MAPE | decode MAPE | worst test point | target |", "|---|---:|---:|---|---:|",
    ]
    tables = []
    for timing in ("kernel_ms", "wall_ms"):
        params = calibrate(gpu, profile.shape, fit, timing=timing)
        report = error_report(SpecLatencyModel(gpu, profile.shape, params, gqa_expanded=True), test, timing)
        worst, predicted, err = report.worst
        target = "<= 10% per phase" if timing == "kernel_ms" else "(information)"
        lines.append(f"| {timing} | {report.mape['prefill']:.1%} | {report.mape['decode']:.1%} | {worst.phase} b={worst.batch} L={worst.tokens}: {err:+.1%} | {target} |")
        rows = [f"\n### {timing}: test points\n", "| phase | batch | tokens | measured ms | predicted ms | error |", "|---|---:|---:|---:|---:|---:|"]
        rows += [f"| {p.phase} | {p.batch} | {p.tokens} | {p.ms(timing):.2f} | {pr:.2f} | {e:+.1%} |" for p, pr, e in report.rows]
        rows.append("\nFitted: " + ", ".join(f"{k}={getattr(params, k):.4g}" for k in ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "overhead_ms", "floor_ms")))
        tables += rows
    text = "\n".join(lines + tables) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
