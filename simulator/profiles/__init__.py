"""GPU specs, model shapes, measured profiles and the calibrated latency model."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from simulator.profiles.shapes import SHAPES, ModelShape, load_shape
from simulator.profiles.specs import GPUS, GpuSpec, get_gpu

__all__ = [
    "GPUS", "SHAPES", "CalibrationParams", "GpuSpec", "ModelShape", "SpecLatencyModel",
    "default_calibration", "default_latency_model", "get_gpu", "load_shape",
]


@lru_cache(maxsize=4)
def default_calibration(timing: str = "kernel") -> CalibrationParams:
    """The shipped parameters, fitted on the measured H100 profile (see their ``source`` and ``mape``)."""
    if timing not in ("kernel", "wall"):
        raise ValueError(f"timing must be 'kernel' or 'wall', got {timing!r}")
    text = resources.files("simulator.data").joinpath(f"calibration_h100_{timing}.json").read_text()
    return CalibrationParams.from_json(text, f"calibration_h100_{timing}.json")


@lru_cache(maxsize=64)
def default_latency_model(gpu: str = "H100", model: str = "llama-8b", timing: str = "kernel", tp: int = 1) -> SpecLatencyModel:
    """The model a serving replica uses: shipped calibration, paged attention (grouped KV read once).

    Other GPUs reuse the H100 efficiencies with their own peak and bandwidth:
    an assumption (kernels reach similar fractions of peak on other parts)
    until a profile of that GPU calibrates them (``kis profile check``).
    """
    return SpecLatencyModel(get_gpu(gpu), load_shape(model), default_calibration(timing), tp=tp, gqa_expanded=False)
