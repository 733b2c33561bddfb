"""Latency-model error: leave-one-profile-out over the shared profiles, MAPE and the worst point per phase.

    .venv/bin/python bench/model_error.py [--out bench/results/model_error.md]

For each measured profile in ../shared/gpu-profiles: calibrate jointly on the
others, predict every point of it. Target: MAPE at most 10% per phase
(kernel timing) on a profile the calibration did not include. Also reported:
the joint calibration's error on its own points (the shipped one), wall-clock
timing (information), and the one measurement the issue quotes from a profile
that is not in ../shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from simulator.profiles import default_latency_model
from simulator.profiles.calibrate import MODEL_ERROR, calibrate, error_report, leave_one_out, model_for
from simulator.profiles.measured import load_profile

PROFILES = Path(__file__).resolve().parents[1].parent / "shared" / "gpu-profiles"
TARGET = 0.10
#: Issue 13: "a 13B shape with full multi-head attention: at batch 32 and 512 tokens of context it predicts
#: 25 ms where the GPU took 58 ms" (H100, HF eager, bf16, kernel time). The profile itself is not available.
QUOTED = ("llama-13b", 32, 512, 58.0)


def _worst_cell(report, phase: str, timing: str) -> str:
    point, predicted, err = report.worst[phase]
    return f"b={point.batch} L={point.tokens}: {point.ms(timing):.2f} ms, predicted {predicted:.2f} ({err:+.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_error.md"))
    args = parser.parse_args()
    profiles = [load_profile(p) for p in sorted(PROFILES.glob("*.json"))]
    rounds = leave_one_out(profiles)
    joint = calibrate(profiles)
    lines = [
        "# Latency model error", "",
        "Command: `.venv/bin/python bench/model_error.py`  ",
        f"Date: {dt.date.today().isoformat()}; profiles: {', '.join(f'`{p.name}`' for p in profiles)} (../shared/gpu-profiles: H100, HF eager, bf16).  ",
        f"Model: `simulator/profiles/roofline.py`, engine `eager`; calibration: MAP fit (`simulator/profiles/calibrate.py`, model error {MODEL_ERROR}).  ",
        "Deterministic (no timing involved); the numbers do not depend on machine load.", "",
        "## Leave one profile out (kernel timing)", "",
        "Calibrated on every other profile, predicting every point of the one held out: a shape the calibration never saw.", "",
        "| held out | calibrated on | prefill MAPE | prefill worst point | decode MAPE | decode worst point | target |",
        "|---|---|---:|---|---:|---|---:|",
    ]
    for r in rounds:
        others = ", ".join(p.name for p in profiles if p is not r.profile)
        lines.append(f"| {r.profile.name} | {others} | {r.kernel.mape['prefill']:.1%} | {_worst_cell(r.kernel, 'prefill', 'kernel_ms')} | "
                     f"{r.kernel.mape['decode']:.1%} | {_worst_cell(r.kernel, 'decode', 'kernel_ms')} | <= {TARGET:.0%} per phase |")
    met = all(max(r.kernel.mape.values()) <= TARGET for r in rounds)
    lines += ["", f"Target met on every held-out profile: {'yes' if met else 'NO'}.", "",
              "What this judges: two H100 profiles of the same engine, and the same 4:1 grouped-KV ratio and vocabulary, that differ",
              "in size (1.5B and 8B). Leave-one-out over two profiles is thin: each round fits on one profile, so the priors decide",
              "what one profile cannot (a per-kernel cost against slow weight streaming). No profile of another GPU, of MHA or",
              "of another vocabulary is available here: the GPU transfer and those terms are not validated by a held-out profile.", "",
              "## Joint calibration (the shipped `simulator/data/calibration_h100.json`), error on its own points", "",
              "| profile | timing | prefill MAPE | prefill worst point | decode MAPE | decode worst point |", "|---|---|---:|---|---:|---|"]
    for profile in profiles:
        for timing in ("kernel", "wall"):
            report = error_report(model_for(profile, joint, timing), profile.points, f"{timing}_ms")
            lines.append(f"| {profile.name} | {timing} | {report.mape['prefill']:.1%} | {_worst_cell(report, 'prefill', f'{timing}_ms')} | "
                         f"{report.mape['decode']:.1%} | {_worst_cell(report, 'decode', f'{timing}_ms')} |")
    lines += ["", "Fitted: " + ", ".join(f"{k}={getattr(joint, k):.4g}" for k in
                                         ("compute_eff", "memory_eff", "attention_compute_eff", "attention_memory_eff", "kernel_us", "host_kernel_us")), "",
              "Wall timing (eager host launch time) is for information: the 8B profile's measured wall times at 512 tokens of",
              "context are 30.1, 38.5, 53.1 and 47.9 ms at batch 1, 8, 32 and 64 (host-bound, no trend in batch): noise a model cannot follow.", "",
              "## The point the issue quotes (profile not available)", ""]
    shape, batch, context, measured = QUOTED
    predicted = default_latency_model("H100", shape, "kernel", engine="eager").decode_ms(batch, context)
    lines += [f"{shape} (MHA, 40 KV heads), decode, batch {batch}, {context} tokens of context, H100, eager: measured {measured:.0f} ms "
              f"(issue 13), previous model 25 ms, this model {predicted:.1f} ms ({(predicted - measured) / measured:+.1%}).", "",
              "## Per-point errors, leave one out", ""]
    for r in rounds:
        lines += [f"### {r.profile.name} (held out)", "", "| phase | batch | tokens | kernel ms | predicted | error |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {p.phase} | {p.batch} | {p.tokens} | {p.kernel_ms:.2f} | {pr:.2f} | {e:+.1%} |" for p, pr, e in r.kernel.rows]
        lines.append("")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
