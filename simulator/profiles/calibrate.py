"""Fit the efficiencies of :class:`SpecLatencyModel` jointly on one or more measured profiles.

The fit is a maximum a posteriori estimate: least squares on
``log(predicted / measured) / MODEL_ERROR`` over every point of every
profile, plus ``log(value / prior) / sigma`` for every parameter. One profile
cannot tell a fixed cost per kernel from slow weight streaming (both are
constant in the batch) nor a per-layer cost from a per-iteration one; the
priors (what such kernels reach on datacenter GPUs) settle what the data
leave open, and the data move every parameter they constrain. Kernel
parameters are fitted on ``kernel_ms``; the host launch time then on
``wall_ms`` with the rest held.

:func:`leave_one_out` calibrates on all profiles but one and predicts that one,
for each profile in turn: the error on a shape the calibration never saw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from simulator.profiles.engines import get_engine
from simulator.profiles.measured import MeasuredProfile, ProfilePoint
from simulator.profiles.roofline import PARAM_NAMES, CalibrationParams, SpecLatencyModel

#: Expected model error, the scale of a point's log residual (chosen with the leave-one-out validation: bench/model_error.py).
MODEL_ERROR = 0.15
PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class Prior:
    """A log-normal prior: ``value`` and the standard deviation of ``log(parameter / value)``."""

    value: float
    log_sigma: float


#: Engineering priors (kernel timing): bf16 GEMMs on datacenter GPUs sustain about 60-80% of dense peak,
#: streaming kernels 75-90% of HBM bandwidth, FlashAttention-2 forward 35-50% of H100 peak; a tiny kernel
#: lasts a few microseconds; eager PyTorch needs tens of microseconds of host time per kernel.
#: The decode attention kernel's prior comes from the engine mode.
PRIORS: dict[str, Prior] = {
    "compute_eff": Prior(0.7, 0.5),
    "memory_eff": Prior(0.8, 0.3),
    "attention_compute_eff": Prior(0.4, 0.5),
    "attention_memory_eff": Prior(0.15, 1.0),
    "kernel_us": Prior(2.0, 0.5),
    "host_kernel_us": Prior(25.0, 0.5),
}
LOWER = {"compute_eff": 0.02, "memory_eff": 0.02, "attention_compute_eff": 0.005, "attention_memory_eff": 0.005, "kernel_us": 1e-3, "host_kernel_us": 1e-3}
UPPER = {"compute_eff": 1.0, "memory_eff": 1.0, "attention_compute_eff": 1.0, "attention_memory_eff": 1.0, "kernel_us": 100.0, "host_kernel_us": 1000.0}


def predict_point(model: SpecLatencyModel, point: ProfilePoint) -> float:
    if point.phase == "prefill":
        return model.prefill_ms(point.batch, point.tokens)
    return model.decode_ms(point.batch, point.tokens)


@dataclass(frozen=True)
class ErrorReport:
    """MAPE per phase and the worst point per phase of predicting a profile."""

    mape: dict[str, float]
    worst: dict[str, tuple[ProfilePoint, float, float]]  # phase -> (point, predicted ms, relative error)
    rows: tuple[tuple[ProfilePoint, float, float], ...]

    @property
    def worst_overall(self) -> tuple[ProfilePoint, float, float]:
        return max(self.worst.values(), key=lambda r: abs(r[2]))


def error_report(model: SpecLatencyModel, points: Sequence[ProfilePoint], timing: str = "kernel_ms") -> ErrorReport:
    rows = []
    for point in points:
        predicted = predict_point(model, point)
        measured = point.ms(timing)
        rows.append((point, predicted, (predicted - measured) / measured))
    mape, worst = {}, {}
    for phase in PHASES:
        mine = [r for r in rows if r[0].phase == phase]
        if mine:
            mape[phase] = float(np.mean([abs(r[2]) for r in mine]))
            worst[phase] = max(mine, key=lambda r: abs(r[2]))
    return ErrorReport(mape, worst, tuple(rows))


def model_for(profile: MeasuredProfile, params: CalibrationParams, timing: str = "kernel") -> SpecLatencyModel:
    """The model of ``profile``'s GPU, shape and engine under ``params``."""
    return SpecLatencyModel(profile.spec(), profile.shape, params, engine=profile.engine, timing=timing)


def _priors(engine: str) -> dict[str, Prior]:
    return PRIORS | {"attention_memory_eff": Prior(get_engine(engine).attention_memory_eff, PRIORS["attention_memory_eff"].log_sigma)}


def _map_fit(names: tuple[str, ...], base: CalibrationParams, priors: dict[str, Prior], residuals, model_error: float) -> CalibrationParams:
    lower = np.array([LOWER[n] for n in names])
    upper = np.array([UPPER[n] for n in names])
    prior = np.array([priors[n].value for n in names])
    sigma = np.array([priors[n].log_sigma for n in names])

    def objective(x: np.ndarray) -> np.ndarray:
        params = replace(base, **{n: float(v) for n, v in zip(names, x)})
        return np.concatenate([residuals(params) / model_error, np.log(x / prior) / sigma])

    x0 = np.clip(prior, lower * 1.001, upper * 0.999)
    fit = least_squares(objective, x0, bounds=(lower, upper), x_scale="jac")
    return replace(base, **{n: float(v) for n, v in zip(names, fit.x)})


def calibrate(profiles: Sequence[MeasuredProfile], *, source: str = "", wall: bool = True, model_error: float = MODEL_ERROR) -> CalibrationParams:
    """Joint MAP fit on every point of ``profiles`` (one engine; shapes and GPUs may differ).

    ``wall`` also fits the host launch time on ``wall_ms`` (engines without CUDA graphs).
    ``model_error`` weighs the data against the priors (small: trust the data).
    """
    if not model_error > 0:
        raise ValueError(f"model_error must be positive, got {model_error}")
    if not profiles:
        raise ValueError("calibration needs at least one measured profile")
    kernels = {get_engine(p.engine).attention_kernel for p in profiles}
    if len(kernels) > 1:
        raise ValueError(f"calibrate profiles of one engine at a time; got engines {sorted({p.engine for p in profiles})}")
    engine = profiles[0].engine
    for profile in profiles:
        if len(profile.points) < 2:
            raise ValueError(f"{profile.name}: a profile needs at least two points to calibrate on")
        profile.spec()  # an unknown GPU fails here, with the profile's name
    priors = _priors(engine)
    base = CalibrationParams(**{n: p.value for n, p in priors.items()}, engine=engine)

    def residuals(timing: str):
        measured = [np.array([pt.ms(f"{timing}_ms") for pt in p.points]) for p in profiles]

        def fn(params: CalibrationParams) -> np.ndarray:
            out = []
            for profile, m in zip(profiles, measured):
                model = model_for(profile, params, timing)
                out.append(np.log(np.array([predict_point(model, pt) for pt in profile.points]) / m))
            return np.concatenate(out)
        return fn

    params = _map_fit(PARAM_NAMES, base, priors, residuals("kernel"), model_error)
    if wall and not get_engine(engine).cuda_graphs:
        params = _map_fit(("host_kernel_us",), params, priors, residuals("wall"), model_error)
    fit: dict = {"date": dt.date.today().isoformat(), "model_error": model_error, "profiles": {}}
    for profile in profiles:
        errors = {t: {k: round(v, 4) for k, v in error_report(model_for(profile, params, t), profile.points, f"{t}_ms").mape.items()}
                  for t in ("kernel", "wall")}
        fit["profiles"][profile.name] = errors
    names = ", ".join(f"{p.name} ({len(p.points)} points)" for p in profiles)
    return replace(params, source=source or f"calibrated on {names}", fit=fit)


@dataclass(frozen=True)
class HeldOut:
    """One round of leave-one-out: the profile left out, the calibration without it, and its errors."""

    profile: MeasuredProfile
    params: CalibrationParams
    kernel: ErrorReport
    wall: ErrorReport


def leave_one_out(profiles: Sequence[MeasuredProfile]) -> list[HeldOut]:
    """For each profile: calibrate on the others, predict it."""
    if len(profiles) < 2:
        raise ValueError("leave-one-out needs at least two profiles")
    rounds = []
    for i, held in enumerate(profiles):
        rest = [p for j, p in enumerate(profiles) if j != i]
        params = calibrate(rest)
        rounds.append(HeldOut(held, params, error_report(model_for(held, params, "kernel"), held.points, "kernel_ms"),
                              error_report(model_for(held, params, "wall"), held.points, "wall_ms")))
    return rounds
