"""Aggregated traffic (requests and tokens per time bin) expanded into requests.

The ``per-minute`` trace format: a CSV with ``requests``, ``prompt_tokens`` and
``generated_tokens`` (totals in the bin) and either ``minute`` (60-second
bins, as ``kis workload generate`` writes) or ``start_s`` and ``seconds`` (as
``kis calibrate`` writes). Each bin's requests arrive uniformly at random in
the bin (a Poisson process given its count); each request gets the bin's mean
prompt and output length (totals kept exactly): the format carries the rate
and the token mix, not the spread of lengths within a bin.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from simulator.workloads.traces import TraceReadResult, WorkloadError
from simulator.workloads.workload import Workload

COLUMNS = ("requests", "prompt_tokens", "generated_tokens")


def _number(record: dict, column: str, where: str) -> float:
    value = record.get(column)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise WorkloadError(f"{where}: column {column!r}: not a number: {value!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise WorkloadError(f"{where}: column {column!r}: must be a finite number >= 0, got {value!r}")
    return number


def _split(total: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` positive integers summing to ``round(total)`` (at least one each), as even as possible."""
    whole = max(n, int(round(total)))
    out = np.full(n, whole // n, dtype=np.int64)
    out[rng.permutation(n)[: whole - out.sum()]] += 1
    return out


def write_aggregate_csv(rows: list[tuple[float, float, float, float, float]], path: Path) -> Path:
    """``(start_s, seconds, requests, prompt_tokens, generated_tokens)`` rows as a ``per-minute`` CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_s", "seconds", *COLUMNS])
        for start, seconds, requests, prompt, generated in rows:
            writer.writerow([f"{start:g}", f"{seconds:g}", int(round(requests)), int(round(prompt)), int(round(generated))])
    return path


def read_aggregate(path: str | Path, *, seed: int = 0, name: str | None = None) -> TraceReadResult:
    """A ``per-minute`` CSV expanded into a :class:`Workload` (arrivals drawn with ``seed``)."""
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file")
    rng = np.random.default_rng(seed)
    arrivals, prompts, outputs = [], [], []
    end = 0.0
    rows = 0
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        timed = "start_s" in header and "seconds" in header
        missing = [c for c in COLUMNS if c not in header] + ([] if timed or "minute" in header else ["minute (or start_s and seconds)"])
        if missing:
            raise WorkloadError(f"{path}:1: missing column(s) {', '.join(missing)}; found {', '.join(repr(c) for c in header) or 'none'}")
        last_start = -math.inf
        for number, record in enumerate(reader, start=2):
            rows += 1
            where = f"{path}:{number}"
            start = _number(record, "start_s", where) if timed else 60.0 * _number(record, "minute", where)
            seconds = _number(record, "seconds", where) if timed else 60.0
            if start < last_start:
                raise WorkloadError(f"{where}: bins must be in time order ({start:g} s after {last_start:g} s)")
            last_start = start
            n = int(round(_number(record, "requests", where)))
            prompt, generated = _number(record, "prompt_tokens", where), _number(record, "generated_tokens", where)
            end = max(end, start + seconds)
            if n == 0:
                continue
            if seconds <= 0:
                raise WorkloadError(f"{where}: column 'seconds': a bin with requests needs a positive length")
            arrivals.append(np.sort(rng.uniform(start, start + seconds, n)))
            prompts.append(_split(prompt, n, rng))
            outputs.append(_split(generated, n, rng))
    if not arrivals:
        raise WorkloadError(f"{path}: no requests in {rows} bin(s)")
    times = np.concatenate(arrivals)
    workload = Workload(times, np.concatenate(prompts), np.concatenate(outputs), duration_s=max(end, float(times[-1])), name=name or path.stem)
    return TraceReadResult(workload, rows)
