"""Summary statistics of a workload (``kis workload stats``)."""

from __future__ import annotations

import numpy as np

from simulator.workloads.ops import per_minute
from simulator.workloads.workload import Workload


def workload_stats(w: Workload) -> dict[str, float]:
    """Rows, span, token percentiles, mean and peak (aligned 1-minute bins from the first request) rates."""
    out: dict[str, float] = {"rows": float(len(w))}
    span = float(w.arrival_s[-1] - w.arrival_s[0]) if len(w) > 1 else 0.0
    out["span_s"] = span
    out["mean_rate_rps"] = len(w) / span if span > 0 else float("nan")
    minutes = per_minute(w)["requests"] if len(w) else np.zeros(1)
    out["peak_minute_requests"] = float(minutes.max())
    out["peak_rate_rps"] = float(minutes.max()) / 60.0
    for label, values in (("prompt", w.prompt_tokens), ("output", w.output_tokens)):
        if len(values):
            out[f"{label}_mean"] = float(values.mean())
            out[f"{label}_min"] = float(values.min())
            out[f"{label}_max"] = float(values.max())
            for q in (50, 90, 99):
                out[f"{label}_p{q}"] = float(np.percentile(values, q))
    return out
