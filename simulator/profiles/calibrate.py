"""Fit the efficiency parameters of :class:`SpecLatencyModel` on a measured profile."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from simulator.profiles.measured import MeasuredProfile, ProfilePoint
from simulator.profiles.roofline import PARAM_NAMES, CalibrationParams, SpecLatencyModel
from simulator.profiles.shapes import ModelShape
from simulator.profiles.specs import GpuSpec

LOWER = np.array([0.01, 0.01, 0.001, 0.001, 0.0, 0.0])
UPPER = np.array([1.0, 1.0, 1.0, 1.0, 50.0, 100.0])


def predict_point(model: SpecLatencyModel, point: ProfilePoint) -> float:
    if point.phase == "prefill":
        return model.prefill_ms(point.batch, point.tokens)
    return model.decode_ms(point.batch, point.tokens)


@dataclass(frozen=True)
class ErrorReport:
    """MAPE per phase and the worst point of predicting a profile."""

    mape: dict[str, float]
    worst: tuple[ProfilePoint, float, float]  # point, predicted, relative error
    rows: tuple[tuple[ProfilePoint, float, float], ...]


def error_report(model: SpecLatencyModel, points: Sequence[ProfilePoint], timing: str = "kernel_ms") -> ErrorReport:
    rows = []
    for point in points:
        predicted = predict_point(model, point)
        measured = point.ms(timing)
        rows.append((point, predicted, (predicted - measured) / measured))
    mape = {phase: float(np.mean([abs(r[2]) for r in rows if r[0].phase == phase])) for phase in ("prefill", "decode") if any(r[0].phase == phase for r in rows)}
    worst = max(rows, key=lambda r: abs(r[2]))
    return ErrorReport(mape, worst, tuple(rows))


def calibrate(
    gpu: GpuSpec,
    shape: ModelShape,
    points: Sequence[ProfilePoint],
    *,
    timing: str = "kernel_ms",
    gqa_expanded: bool = True,
    start: CalibrationParams = CalibrationParams(),
    source: str = "",
) -> CalibrationParams:
    """Least squares on log(predicted / measured) over ``points``, parameters bounded to physical ranges.

    ``gqa_expanded`` defaults to True because the shipped profiles were measured
    with eager Hugging Face attention (see the profile README).
    """
    if len(points) < len(PARAM_NAMES):
        raise ValueError(f"need at least {len(PARAM_NAMES)} points to calibrate, got {len(points)}")
    measured = np.array([p.ms(timing) for p in points])

    def residuals(x: np.ndarray) -> np.ndarray:
        params = CalibrationParams(*x, timing=timing)
        model = SpecLatencyModel(gpu, shape, params, gqa_expanded=gqa_expanded)
        return np.log(np.array([predict_point(model, p) for p in points]) / measured)

    x0 = np.array(start.vector())
    x0[PARAM_NAMES.index("floor_ms")] = 0.5 * measured.min()  # a zero floor has no gradient
    x0 = np.clip(x0, LOWER + 1e-6, UPPER - 1e-6)
    fit = least_squares(residuals, x0, bounds=(LOWER, UPPER), x_scale="jac")
    params = CalibrationParams(*(float(v) for v in fit.x), timing=timing)
    report = error_report(SpecLatencyModel(gpu, shape, params, gqa_expanded=gqa_expanded), points, timing)
    return replace(params, source=source or "calibrated", mape={k: round(v, 4) for k, v in report.mape.items()} | {"fitted": dt.date.today().isoformat()})


def calibrate_profile(profile: MeasuredProfile, gpu: GpuSpec, *, timing: str = "kernel_ms", points: Sequence[ProfilePoint] | None = None) -> CalibrationParams:
    return calibrate(gpu, profile.shape, points if points is not None else profile.points, timing=timing, source=profile.source)
