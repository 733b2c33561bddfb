"""Trace replay: Azure, BurstGPT, Mooncake and generic CSV/JSONL readers.

A format names three fields (arrival time, prompt tokens, output tokens) and
the time unit; ``per-minute`` reads aggregated traffic instead. ``--format`` accepts a preset name or a generic mapping:
``generic:time=ts,prompt=input,output=output,unit=ms`` (CSV or, for
``.jsonl``/``.json`` files, JSON lines).

Bad rows (missing value, unparsable number or time, timestamp going
backwards, negative or zero token counts) raise :class:`WorkloadError` naming
file, line and column, unless ``skip_bad_rows`` is set: then they are dropped
and counted in :attr:`TraceReadResult.skipped`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.workloads.workload import Workload

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "datetime": math.nan}


class WorkloadError(ValueError):
    """A malformed workload or trace; the message says what and where."""


@dataclass(frozen=True)
class TraceFormat:
    """How to read one trace format."""

    name: str
    time: str
    prompt: str
    output: str
    time_unit: str = "s"
    jsonl: bool = False

    def __post_init__(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise WorkloadError(f"format {self.name}: time unit must be one of {', '.join(TIME_UNITS)}, got {self.time_unit!r}")


#: Aggregated traffic per time bin (``kis workload generate``, ``kis calibrate``), see :mod:`simulator.workloads.aggregate`.
AGGREGATE_FORMATS = ("per-minute",)
PRESETS: dict[str, TraceFormat] = {
    "azure": TraceFormat("azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", "datetime"),
    "burstgpt": TraceFormat("burstgpt", "Timestamp", "Request tokens", "Response tokens", "s"),
    "mooncake": TraceFormat("mooncake", "timestamp", "input_length", "output_length", "ms", jsonl=True),
}


def parse_format(spec: str | TraceFormat, path: Path | None = None) -> TraceFormat:
    """A preset name, or ``generic:time=COL,prompt=COL,output=COL[,unit=s|ms|us|datetime]``."""
    if isinstance(spec, TraceFormat):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    if spec == "generic" or spec.startswith("generic:"):
        options = dict(item.split("=", 1) for item in spec.partition(":")[2].split(",") if "=" in item)
        missing = [k for k in ("time", "prompt", "output") if k not in options]
        if missing:
            raise WorkloadError(f"generic format needs {', '.join(missing)}: e.g. generic:time=ts,prompt=input,output=output,unit=ms")
        jsonl = path is not None and path.suffix in (".jsonl", ".json")
        return TraceFormat("generic", options["time"], options["prompt"], options["output"], options.get("unit", "s"), jsonl)
    raise WorkloadError(f"unknown trace format {spec!r}; presets: {', '.join(PRESETS)}, per-minute, or generic:time=..,prompt=..,output=..")


@dataclass
class TraceReadResult:
    """The workload read, and what was skipped (with the first few reasons)."""

    workload: Workload
    rows: int
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def _rows(path: Path, fmt: TraceFormat) -> Iterator[tuple[int, dict]]:
    """(line number, record) pairs; the header is line 1 for CSV."""
    with path.open(newline="") as f:
        if fmt.jsonl:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise WorkloadError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
                if not isinstance(record, dict):
                    raise WorkloadError(f"{path}:{number}: a JSON line must be an object")
                yield number, record
            return
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in (fmt.time, fmt.prompt, fmt.output) if c not in header]
        if missing:
            raise WorkloadError(f"{path}:1: missing column(s) {', '.join(repr(c) for c in missing)}; found {', '.join(repr(c) for c in header) or 'none'}")
        for number, record in enumerate(reader, start=2):
            yield number, record


def _time(value: object, unit: str) -> float:
    if unit == "datetime":
        text = str(value).strip().replace("T", " ")
        head, _, frac = text.partition(".")
        moment = dt.datetime.strptime(head, "%Y-%m-%d %H:%M:%S")
        seconds = moment.replace(tzinfo=dt.timezone.utc).timestamp()
        return seconds + (float("0." + frac) if frac else 0.0)
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number * TIME_UNITS[unit]


def _tokens(value: object) -> int:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"not a whole number: {value!r}")
    return int(number)


def read_trace(path: str | Path, fmt: str | TraceFormat, *, skip_bad_rows: bool = False, name: str | None = None, seed: int = 0) -> TraceReadResult:
    """Read a trace into a :class:`Workload` (arrivals re-based to the first request).

    ``per-minute`` reads aggregated traffic (:mod:`simulator.workloads.aggregate`), expanded with ``seed``.
    """
    if fmt in AGGREGATE_FORMATS:
        from simulator.workloads.aggregate import read_aggregate

        return read_aggregate(path, seed=seed, name=name)
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file")
    trace_format = parse_format(fmt, path)
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    skipped = 0
    problems: list[str] = []
    rows = 0
    for number, record in _rows(path, trace_format):
        rows += 1
        try:
            column = trace_format.time
            if column not in record or record[column] in (None, ""):
                raise ValueError("missing value")
            t = _time(record[column], trace_format.time_unit)
            if times and t < times[-1]:
                raise ValueError(f"timestamp goes backwards ({record[column]!r} after an earlier row)")
            values = []
            for column in (trace_format.prompt, trace_format.output):
                if column not in record or record[column] in (None, ""):
                    raise ValueError("missing value")
                tokens = _tokens(record[column])
                if tokens < 0:
                    raise ValueError(f"negative token count {tokens}")
                if tokens == 0:
                    raise ValueError("zero tokens (a failed request?)")
                values.append(tokens)
        except ValueError as exc:
            message = f"{path}:{number}: column {column!r}: {exc}"
            if not skip_bad_rows:
                raise WorkloadError(message) from exc
            skipped += 1
            if len(problems) < 5:
                problems.append(message)
            continue
        times.append(t)
        prompts.append(values[0])
        outputs.append(values[1])
    if not times:
        raise WorkloadError(f"{path}: no usable rows ({rows} read, {skipped} skipped)")
    start = times[0]
    arrivals = np.asarray(times, dtype=np.float64) - start
    time_of_day = (start % 86400.0) if trace_format.time_unit == "datetime" else 0.0
    workload = Workload(
        arrivals, np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64),
        duration_s=float(arrivals[-1]) + 1.0, name=name or path.stem, start_time_of_day_s=time_of_day,
    )
    return TraceReadResult(workload, rows, skipped, problems)
