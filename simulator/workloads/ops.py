"""Pure transforms of workloads, and per-minute aggregates."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from simulator.workloads.workload import Workload


def _select(w: Workload, mask: np.ndarray, arrivals: np.ndarray, duration_s: float, name: str | None = None, tod: float | None = None) -> Workload:
    return Workload(arrivals, w.prompt_tokens[mask], w.output_tokens[mask], duration_s, name or w.name,
                    w.start_time_of_day_s if tod is None else tod)


def window(w: Workload, start_s: float, end_s: float) -> Workload:
    """Requests arriving in ``[start_s, end_s)``, re-based to start at 0."""
    if end_s <= start_s:
        raise ValueError(f"window end {end_s} must be after its start {start_s}")
    mask = (w.arrival_s >= start_s) & (w.arrival_s < end_s)
    end = min(end_s, w.duration_s)
    return _select(w, mask, w.arrival_s[mask] - start_s, max(end - start_s, 0.0) if mask.any() else end_s - start_s,
                   tod=(w.start_time_of_day_s + start_s) % 86400.0)


def compress(w: Workload, factor: float) -> Workload:
    """Time compression: arrivals ``factor`` times closer together (rate x factor)."""
    if factor <= 0:
        raise ValueError(f"compression factor must be positive, got {factor}")
    return Workload(w.arrival_s / factor, w.prompt_tokens, w.output_tokens, w.duration_s / factor, w.name, w.start_time_of_day_s)


def scale_rate(w: Workload, factor: float, rng: np.random.Generator) -> Workload:
    """Scale the request rate keeping the time axis.

    ``factor < 1`` keeps each request with probability ``factor``; ``factor > 1``
    adds ``floor(factor) - 1`` copies of every request plus a random share for
    the fraction, each copy with its arrival jittered uniformly within +-0.5 s
    (clipped to the window) so copies do not arrive at the same instant.
    """
    if factor <= 0:
        raise ValueError(f"rate factor must be positive, got {factor}")
    if factor == 1:
        return w
    whole, frac = int(np.floor(factor)), factor - np.floor(factor)
    parts = [np.arange(len(w))] * max(whole, 0)
    if frac > 0:
        parts.append(np.flatnonzero(rng.random(len(w)) < frac))
    index = np.concatenate(parts) if parts else np.zeros(0, dtype=int)
    arrivals = w.arrival_s[index].copy()
    if whole >= 1:
        copies = np.ones(len(index), dtype=bool)
        copies[: len(w)] = False
        arrivals[copies] = np.clip(arrivals[copies] + rng.uniform(-0.5, 0.5, copies.sum()), 0.0, w.duration_s)
    order = np.argsort(arrivals, kind="stable")
    return Workload(arrivals[order], w.prompt_tokens[index][order], w.output_tokens[index][order], w.duration_s, w.name, w.start_time_of_day_s)


def concat(first: Workload, second: Workload) -> Workload:
    """``second`` appended after ``first`` ends."""
    return Workload(
        np.concatenate([first.arrival_s, second.arrival_s + first.duration_s]),
        np.concatenate([first.prompt_tokens, second.prompt_tokens]),
        np.concatenate([first.output_tokens, second.output_tokens]),
        first.duration_s + second.duration_s, f"{first.name}+{second.name}", first.start_time_of_day_s,
    )


def per_minute(w: Workload) -> np.ndarray:
    """Structured array: minute, requests, prompt_tokens, generated_tokens."""
    minutes = max(1, int(np.ceil(w.duration_s / 60.0)))
    index = np.minimum((w.arrival_s // 60).astype(int), minutes - 1)
    out = np.zeros(minutes, dtype=[("minute", "i8"), ("requests", "i8"), ("prompt_tokens", "i8"), ("generated_tokens", "i8")])
    out["minute"] = np.arange(minutes)
    out["requests"] = np.bincount(index, minlength=minutes)
    out["prompt_tokens"] = np.bincount(index, weights=w.prompt_tokens, minlength=minutes)
    out["generated_tokens"] = np.bincount(index, weights=w.output_tokens, minlength=minutes)
    return out


def write_per_minute_csv(w: Workload, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = per_minute(w)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(rows.dtype.names)
        writer.writerows(rows.tolist())
    return path


def write_requests_csv(w: Workload, path: Path) -> Path:
    """Raw requests in the generic format ``generic:time=arrival_s,prompt=prompt_tokens,output=output_tokens``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arrival_s", "prompt_tokens", "output_tokens"])
        writer.writerows(zip((f"{t:.6f}" for t in w.arrival_s), w.prompt_tokens.tolist(), w.output_tokens.tolist()))
    return path
