"""Shared fixtures: paths to ../shared data (tests skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def azure_conv(shared_dir: Path) -> Path:
    path = shared_dir / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
    if not path.is_file():
        pytest.skip("Azure conversation trace not present")
    return path


@pytest.fixture(scope="session")
def h100_profile(shared_dir: Path) -> Path:
    path = shared_dir / "gpu-profiles" / "h100_llama-1b.json"
    if not path.is_file():
        pytest.skip("H100 profile not present")
    return path
