"""GPU specs, model shapes, engine modes, measured profiles and the calibrated latency model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from simulator.profiles.engines import ENGINES, EngineMode, get_engine
from simulator.profiles.roofline import CalibrationParams, SpecLatencyModel
from simulator.profiles.shapes import SHAPES, ModelShape, load_shape
from simulator.profiles.specs import GPUS, GpuSpec, get_gpu

__all__ = [
    "ENGINES", "GPUS", "SHAPES", "CalibrationParams", "EngineMode", "GpuSpec", "ModelShape", "SpecLatencyModel",
    "default_calibration", "default_latency_model", "get_engine", "get_gpu", "load_calibration", "load_shape",
]

SHIPPED = "calibration_h100.json"


@lru_cache(maxsize=1)
def default_calibration() -> CalibrationParams:
    """The shipped parameters, fitted jointly on the measured H100 profiles (see their ``source`` and ``fit``)."""
    return CalibrationParams.from_json(resources.files("simulator.data").joinpath(SHIPPED).read_text(), SHIPPED)


def _is_profile(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    return isinstance(data, dict) and ("prefill" in data or "decode" in data)


@lru_cache(maxsize=32)
def _load_calibration(sources: tuple[str, ...]) -> CalibrationParams:
    if not sources:
        return default_calibration()
    paths = [Path(s) for s in sources]
    kinds = [_is_profile(p) for p in paths]
    if not any(kinds):
        if len(paths) > 1:
            raise ValueError(f"give one calibration file, or measured profiles to calibrate on; got {len(paths)} calibration files")
        return CalibrationParams.load(paths[0])
    if not all(kinds):
        raise ValueError("mix of calibration files and measured profiles: give one calibration file, or only measured profiles")
    from simulator.profiles.calibrate import calibrate  # scipy: offline work only
    from simulator.profiles.measured import load_profile

    return calibrate([load_profile(p) for p in paths])


def load_calibration(sources: Sequence[str | Path] = ()) -> CalibrationParams:
    """Calibration from ``sources``: nothing (the shipped one), one calibration JSON, or measured profiles (fitted jointly)."""
    return _load_calibration(tuple(str(s) for s in sources))


@lru_cache(maxsize=64)
def default_latency_model(gpu: str = "H100", model: str = "llama-8b", timing: str = "kernel", tp: int = 1,
                          engine: str = "paged", calibration: tuple[str, ...] = ()) -> SpecLatencyModel:
    """The model a serving replica uses: by default vLLM-like (paged attention, CUDA graphs) with the shipped calibration.

    Other GPUs reuse the calibrated efficiencies with their own peak and
    bandwidth: an assumption (kernels reach similar fractions of peak on other
    parts) until a profile of that GPU calibrates them (``kis profile check``).
    """
    return SpecLatencyModel(get_gpu(gpu), load_shape(model), load_calibration(calibration), tp=tp, engine=engine, timing=timing)
