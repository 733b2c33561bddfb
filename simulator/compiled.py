"""The simulator's hot path compiled with mypyc, and the guard that keeps it honest.

The modules in :data:`MODULES` (the serving engine's iteration loop, its
iteration-time model, metric sink and kernel activity, the cluster's event
loop and its telemetry) are plain, typed Python. `mypyc
<https://mypyc.readthedocs.io>`_ compiles them to C extensions that sit next
to their sources, which Python imports in preference to the ``.py`` files:
the same code, several times faster, with the same results (IEEE doubles
either way; ``tests/test_trajectory.py`` checks both builds against the
recorded trajectories)::

    .venv/bin/python scripts/compile_engine build    # scripts/setup does this
    .venv/bin/python scripts/compile_engine status
    .venv/bin/python scripts/compile_engine clean

The build records a hash of each source in :data:`MANIFEST`. On import of
:mod:`simulator`, :func:`activate` compares them: if any source changed since
the build (an edit, a checkout) the compiled modules are ignored and all of
them load from source, with one warning to rebuild, so an edit is never
shadowed by a stale build. ``KIS_PURE_PYTHON=1`` loads them from source too.
Without a C compiler the build fails with one line and the sources are used.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Compiled together (one mypyc group: calls between them stay native). Not the router: mypyc does not
#: compile its runtime-checkable protocols, and it is not where the time goes.
MODULES = ("simulator.engine.replica", "simulator.engine.metrics", "simulator.engine.activity", "simulator.profiles.roofline",
           "simulator.cluster.cluster", "simulator.cluster.telemetry")
GROUP = "simulator.compiled_engine"
MANIFEST = ROOT / "simulator" / "compiled_engine.json"
#: Set to any non-empty value but ``0`` to load :data:`MODULES` from source.
PURE_ENV = "KIS_PURE_PYTHON"


def source_of(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def built_files() -> list[Path]:
    """The extension modules under ``simulator/``: only a build puts them there (also one of another module set)."""
    return sorted((ROOT / "simulator").rglob("*.so"))


def module_of(extension: Path) -> str:
    """``simulator/engine/replica.cpython-311-x86_64-linux-gnu.so`` -> ``simulator.engine.replica``."""
    return ".".join(extension.relative_to(ROOT).with_name(extension.name.split(".", 1)[0]).parts)


def expected_modules() -> set[str]:
    """The extension modules a build of :data:`MODULES` leaves (theirs and the group's shared library)."""
    return set(MODULES) | {GROUP + "__mypyc"}


def digests() -> dict[str, str]:
    return {m: hashlib.sha256(source_of(m).read_bytes()).hexdigest() for m in MODULES}


def judge(built: set[str], recorded: object, sources: dict[str, str]) -> str:
    """``absent`` (no extension modules), ``current`` (exactly this build's, from these sources: the recorded hashes
    are theirs) or ``stale``."""
    if not built:
        return "absent"
    return "current" if recorded == sources and built == expected_modules() else "stale"


def state() -> str:
    """The build in this tree, judged (see :func:`judge`)."""
    built = {module_of(p) for p in built_files()}
    if not built:
        return "absent"
    try:
        recorded = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        recorded = None
    return judge(built, recorded, digests())


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds :data:`MODULES`, and any other module with an extension beside it, as their ``.py`` files."""

    def __init__(self) -> None:
        self.modules = set(MODULES) | {module_of(p) for p in built_files()}

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 (the finder protocol)
        if fullname not in self.modules or not source_of(fullname).is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, source_of(fullname))


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def activate() -> str:
    """Load :data:`MODULES` from source unless a current build is there and not refused; the build used."""
    current = state()
    if current == "stale" and not pure_requested():
        # one line: line 0 has no source text for the warning to quote
        warnings.warn_explicit("the compiled simulator engine is older than its sources: using the sources "
                               "(rebuild: .venv/bin/python scripts/compile_engine build)", RuntimeWarning, __file__, 0,
                               module=__name__)
    if current == "current" and not pure_requested():
        return "compiled"
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
    return "source"


def in_use() -> str:
    """``compiled`` or ``source``: how :data:`MODULES` were loaded in this process."""
    import simulator.engine.replica as replica

    return "compiled" if Path(replica.__file__ or "").suffix == ".so" else "source"


def build() -> None:
    """Compile :data:`MODULES` in place (needs mypy and a C compiler); records their hashes."""
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    warnings.filterwarnings("ignore", module="setuptools")  # it reads the project's pyproject.toml on the way
    with tempfile.TemporaryDirectory(prefix="kis-mypyc-") as tmp:
        cwd = os.getcwd()
        os.chdir(ROOT)  # mypyc names the modules after their paths
        try:
            paths = [str(source_of(m).relative_to(ROOT)) for m in MODULES]
            # type errors elsewhere in the tree are not the build's business: only these modules are compiled
            options = ["--ignore-missing-imports", "--follow-imports=silent"]
            extensions = mypycify([*options, *paths], opt_level="3", separate=[(paths, GROUP)], target_dir=str(Path(tmp) / "c"))
            setup(name="kis-s-compiled-engine", ext_modules=extensions, script_args=["-q", "build_ext", "--inplace", "--build-temp", tmp, "--build-lib", tmp])
        finally:
            os.chdir(cwd)
    MANIFEST.write_text(json.dumps(digests(), indent=2) + "\n")


def clean() -> None:
    for path in built_files():
        path.unlink()
    MANIFEST.unlink(missing_ok=True)
