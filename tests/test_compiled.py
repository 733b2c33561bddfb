"""The compiled engine (simulator/compiled.py): the same trajectories as the sources, and never a stale build in use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import compiled
from tests import trajectory

ROOT = Path(__file__).resolve().parents[1]
needs_build = pytest.mark.skipif(compiled.state() != "current", reason="no current compiled build (scripts/compile_engine build)")


def python(code: str, *, pure: bool = False, path: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV} | ({compiled.PURE_ENV: "1"} if pure else {})
    env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=path, env=env, capture_output=True, text=True, timeout=300)


def test_the_build_is_judged_by_the_hashes_of_its_sources_and_its_modules():
    sources = {"simulator.engine.replica": "ab", "simulator.engine.metrics": "cd"}
    built = compiled.expected_modules()
    assert compiled.judge(set(), sources, sources) == "absent"
    assert compiled.judge(built, dict(sources), sources) == "current"
    assert compiled.judge(built, {**sources, "simulator.engine.replica": "00"}, sources) == "stale"
    assert compiled.judge(built, None, sources) == "stale"  # a build without its manifest
    assert compiled.judge(built | {"simulator.cluster.router"}, sources, sources) == "stale"  # left by a build of another set
    assert compiled.judge(built - {"simulator.engine.replica"}, sources, sources) == "stale"


def test_extension_paths_name_their_modules():
    assert compiled.module_of(compiled.ROOT / "simulator/engine/replica.cpython-311-x86_64-linux-gnu.so") == "simulator.engine.replica"
    assert compiled.module_of(compiled.ROOT / "simulator/compiled_engine__mypyc.cpython-311-x86_64-linux-gnu.so") == compiled.GROUP + "__mypyc"


def test_pure_python_is_loaded_when_asked_for():
    out = python("from simulator import compiled; import simulator.engine.replica as r; print(compiled.in_use(), r.__file__)", pure=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "source" and out.stdout.split()[1].endswith("replica.py")


@needs_build
def test_a_current_build_is_used():
    out = python("from simulator import compiled; print(compiled.in_use())")
    assert out.returncode == 0 and out.stdout.strip() == "compiled", out.stderr


@needs_build
def test_an_edited_source_is_never_shadowed_by_its_old_build(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "simulator", copy / "simulator", ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "simulator" / "engine" / "replica.py"
    source.write_text(source.read_text() + "\nEDITED = True\n")
    out = python("import simulator.engine.replica as r; from simulator import compiled; print(compiled.in_use(), r.EDITED)", path=copy)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["source", "True"]
    assert "older than its sources" in out.stderr and "scripts/compile_engine build" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr  # one line, no quoted source


@pytest.mark.parametrize("pure", [True, False], ids=["source", "compiled"])
def test_each_build_passes_the_engines_tests_and_reproduces_the_recorded_trajectories(pure):
    """The engine's tests, its copies and the recorded trajectories (bit for bit) from the sources and from the compiled build."""
    if not pure and compiled.state() != "current":
        pytest.skip("no current compiled build")
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV} | ({compiled.PURE_ENV: "1"} if pure else {})
    check = "from simulator import compiled; import sys; sys.exit(compiled.in_use() != sys.argv[1])"
    assert subprocess.run([sys.executable, "-c", check, "source" if pure else "compiled"], cwd=ROOT, env=env).returncode == 0
    tests = ["tests/test_engine.py", "tests/test_engine_copy.py", "tests/test_trajectory.py", "tests/test_cluster.py"]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    if trajectory.CONV_TRACE.is_file():
        assert " skipped" not in out.stdout.splitlines()[-1], out.stdout[-500:]  # every recorded trajectory was compared
