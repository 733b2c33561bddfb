"""Run independent cells (simulations, sweep points, oracle searches, training runs) in one of three ways.

- :class:`SerialExecutor`: in this process, one after another.
- :class:`ProcessExecutor`: a local pool of worker processes (forkserver, or
  spawn where there is no forkserver), one cell at a time per worker.
- :class:`RayExecutor`: Ray tasks, on a local Ray instance (``auto``) or a
  cluster (``ray://HOST:10001``, e.g. a KubeRay ``RayCluster``).

Every executor runs ``fn(shared, cell)`` for each cell and returns one
:class:`Outcome` per cell **in the cells' order**, whatever order they finish
in. ``shared`` travels once per worker (the pool's initializer, Ray's object
store), the cells once each, so cells should be small specs (indexes, seeds)
and ``shared`` the heavy part (workloads, configs). A cell that raises becomes
an :class:`Outcome` holding a :class:`CellFailure` (its label, the error, the
traceback) and the other cells still run. ``on_done`` is called in the calling
process as each cell finishes, which is what progress bars need.

``fn``, ``shared`` and the cells must be picklable for the pool and Ray:
``fn`` a module-level function, the rest plain data.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: ``on_done(outcome)``: called in the calling process as each cell finishes.
OnDone = Callable[["Outcome"], None]


@dataclass(frozen=True)
class CellFailure:
    """A cell that raised: which one, the error in one line, and the traceback where it ran."""

    label: str
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.label}: {self.error}"


@dataclass(frozen=True)
class Outcome:
    """The result of cell ``index``: ``value``, or ``failure`` when it raised."""

    index: int
    value: Any = None
    failure: CellFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


class Executor(Protocol):
    """Runs ``fn(shared, cell)`` for every cell; see the module docstring."""

    name: str

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        cells: Sequence[Any],
        *,
        labels: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
        on_done: OnDone | None = None,
    ) -> list[Outcome]:
        """One outcome per cell, in the cells' order. ``weights`` (expected cost) only orders submission: heaviest first."""
        ...

    def close(self) -> None: ...


def _run_cell(fn: Callable[[Any, Any], Any], shared: Any, cell: Any, index: int, label: str) -> Outcome:
    try:
        return Outcome(index, fn(shared, cell))
    except Exception as exc:  # a cell's failure is data: the other cells go on
        return Outcome(index, failure=CellFailure(label, _one_line(exc), traceback.format_exc()))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _labels(cells: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [f"cell {i}" for i in range(len(cells))]
    if len(labels) != len(cells):
        raise ValueError(f"need one label per cell, got {len(labels)} for {len(cells)}")
    return list(labels)


def _submission_order(n: int, weights: Sequence[float] | None) -> list[int]:
    """Heaviest first (longest-processing-time order keeps the workers busy to the end); ties keep the cells' order."""
    if weights is None:
        return list(range(n))
    if len(weights) != n:
        raise ValueError(f"need one weight per cell, got {len(weights)} for {n}")
    return sorted(range(n), key=lambda i: -weights[i])


def _check_picklable(what: str, value: Any) -> None:
    try:
        pickle.dumps(value)
    except Exception as exc:
        raise ValueError(
            f"cannot send {what} to worker processes: {_one_line(exc)} "
            "(use module-level functions and plain data, e.g. simulator.evaluation.presets' workload makers, or --workers 1)"
        ) from exc


def _settle(outcomes: list[Outcome | None], i: int, get: Callable[[], Outcome], names: Sequence[str], on_done: OnDone | None) -> None:
    """Store cell ``i``'s outcome from ``get()``; an error there (the worker died, the cell or its result did not
    serialise) is that cell's failure."""
    try:
        outcome = get()
    except Exception as exc:
        outcome = Outcome(i, failure=CellFailure(names[i], _one_line(exc)))
    outcomes[i] = outcome
    if on_done:
        on_done(outcome)


def _collect(outcomes: list[Outcome | None]) -> list[Outcome]:
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


class _Closing:
    """``with executor:`` closes it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(_Closing):
    """Every cell in this process, one after another, in the cells' order."""

    name = "serial"
    workers = 1

    def map(self, fn, shared, cells, *, labels=None, weights=None, on_done=None) -> list[Outcome]:
        names = _labels(cells, labels)
        outcomes = []
        for i, cell in enumerate(cells):
            outcome = _run_cell(fn, shared, cell, i, names[i])
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
        return outcomes


# ----------------------------------------------------------------- process pool
_SHARED: Any = None


def _init_worker(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _run_in_worker(fn: Callable[[Any, Any], Any], cell: Any, index: int, label: str) -> Outcome:
    return _run_cell(fn, _SHARED, cell, index, label)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


class ProcessExecutor(_Closing):
    """A local pool of ``workers`` processes (a fresh pool per :meth:`map`).

    Workers start by forkserver (spawn where there is none), never by a bare
    fork of a process that may hold threads; the module of ``fn`` is imported
    once in the forkserver so that each worker starts warm. ``shared`` is sent
    once to each worker by the pool's initializer.
    """

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers or default_workers()

    def map(self, fn, shared, cells, *, labels=None, weights=None, on_done=None) -> list[Outcome]:
        names = _labels(cells, labels)
        order = _submission_order(len(cells), weights)
        if not cells:
            return []
        _check_picklable("the shared data", shared)
        _check_picklable("the cell function", fn)
        ctx = _context()
        if ctx.get_start_method() == "forkserver" and fn.__module__ != "__main__":
            ctx.set_forkserver_preload([fn.__module__])  # takes effect when the forkserver first starts
        outcomes: list[Outcome | None] = [None] * len(cells)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(cells)), mp_context=ctx, initializer=_init_worker, initargs=(shared,))
        try:
            futures: dict[Future, int] = {pool.submit(_run_in_worker, fn, cells[i], i, names[i]): i for i in order}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=futures.__getitem__):
                    _settle(outcomes, futures[future], future.result, names, on_done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return _collect(outcomes)


# ------------------------------------------------------------------------- Ray
def _ray_module():
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("Ray is not installed: pip install 'kis-s[ray]'") from exc
    return ray


class RayExecutor(_Closing):
    """Ray tasks of one CPU each.

    :param address: ``auto`` starts (or joins) a local Ray instance; ``ray://HOST:10001``
        connects to a cluster through the Ray Client (KubeRay's head service).
    :param num_cpus: CPUs of a local instance Ray starts (``None``: all).
    :param ship_code: send this checkout's ``simulator`` and ``controller``
        packages with the job (``runtime_env.py_modules``), so that a cluster runs
        the driver's code; its image needs the dependencies only. Default: on
        for ``ray://`` addresses.
    """

    name = "ray"

    def __init__(self, address: str = "auto", *, num_cpus: int | None = None, ship_code: bool | None = None) -> None:
        if address != "auto" and not address.startswith("ray://"):
            raise ValueError(f"--ray takes 'auto' or ray://HOST:PORT, got {address!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.ship_code = address.startswith("ray://") if ship_code is None else ship_code
        self._started = False
        self._task = None

    def _ensure(self):
        ray = _ray_module()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address == "auto":
                kwargs["num_cpus"] = self.num_cpus
            else:
                kwargs["address"] = self.address
            if self.ship_code:
                import controller
                import simulator

                kwargs["runtime_env"] = {"py_modules": [str(Path(simulator.__file__).parent), str(Path(controller.__file__).parent)]}
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise RuntimeError(f"cannot start or reach Ray at {self.address}: {_one_line(exc)}") from exc
            self._started = True
        if self._task is None:
            self._task = ray.remote(num_cpus=1, max_retries=0)(_run_cell)
        return ray

    @property
    def workers(self) -> int:
        ray = self._ensure()
        return int(ray.cluster_resources().get("CPU", 1))

    def map(self, fn, shared, cells, *, labels=None, weights=None, on_done=None) -> list[Outcome]:
        names = _labels(cells, labels)
        order = _submission_order(len(cells), weights)
        if not cells:
            return []
        ray = self._ensure()
        shared_ref = ray.put(shared)
        refs = {self._task.remote(fn, shared_ref, cells[i], i, names[i]): i for i in order}
        outcomes: list[Outcome | None] = [None] * len(cells)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    _settle(outcomes, refs[ref], lambda ref=ref: ray.get(ref), names, on_done)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return _collect(outcomes)

    def close(self) -> None:
        if self._started:
            _ray_module().shutdown()
            self._started = False
            self._task = None


def make_executor(workers: int | None = None, ray: str | None = None) -> SerialExecutor | ProcessExecutor | RayExecutor:
    """The executor the command line asks for: Ray when ``ray`` is given (``workers`` then
    caps a local instance's CPUs), else serial for one worker, else a process pool
    (default: one worker per available core)."""
    if ray:
        return RayExecutor(ray, num_cpus=workers)
    workers = workers or default_workers()
    return SerialExecutor() if workers == 1 else ProcessExecutor(workers)
