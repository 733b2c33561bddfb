"""What every closed-loop run of the twin does around its own pieces.

:func:`every` runs a periodic task on a thread until a stop event;
:func:`wait_until` polls for a condition (the first replicas Ready, a
leader elected); :func:`replay_and_drain` sends the workload through the
front door and lets the loop run on for a drain period. The pieces
themselves (the emulator, replicas, Prometheus, controllers) are the
callers'; they stop them through a :class:`contextlib.ExitStack`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from simulator.loadgen.replay import RequestResult, replay
from simulator.workloads.workload import Workload


def every(interval_s: float, stop: threading.Event, fn: Callable[[], None],
          on_error: Callable[[Exception], None] | None = None) -> threading.Thread:
    """Call ``fn`` every ``interval_s`` on a daemon thread until ``stop`` is set.

    ``on_error``: an exception is handed to it and the task goes on (without one, it ends the thread).
    """

    def loop() -> None:
        while not stop.is_set():
            try:
                fn()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, poll_s: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` pass; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def replay_and_drain(url: str, workload: Workload, drain_s: float) -> list[RequestResult]:
    """Every request of ``workload`` through ``url`` at its times, then ``drain_s`` more of the loop running."""
    results = asyncio.run(replay(url, workload, concurrency_limit=512, timeout_s=120))
    time.sleep(drain_s)
    return results


def stop_threads(stop: threading.Event, threads: list[threading.Thread], timeout_s: float = 5.0) -> None:
    """Set ``stop`` and join each thread (at most ``timeout_s`` each)."""
    stop.set()
    for thread in threads:
        thread.join(timeout_s)
