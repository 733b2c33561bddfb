"""Kubernetes Events sent off the reconcile loop's path, as client-go's event broadcaster does.

:meth:`EventRecorder.emit` queues an Event and returns; a daemon thread
creates the queued Events, ``workers`` at a time and at most ``rate_per_s``
a second after a first ``burst`` (a token bucket, as client-go limits its
clients), so a burst of 1,000 scale events neither stalls the tick nor
competes with its Scale and status writes for the API server. Events are
best-effort reports: when the queue is full (the API server is slow or
down) new ones are dropped and counted, never waited for.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import structlog

from controller.kube import KubeError

log = structlog.get_logger(__name__)


class EventWriter(Protocol):
    def emit_event(self, namespace: str, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal",
                   now: dt.datetime | None = None) -> None: ...


class EventRecorder:
    """Creates Events in the background.

    :param kube: what creates them (:class:`controller.kube.KubeClient`).
    :param capacity: Events waiting at most; more are dropped (:attr:`dropped`).
    :param workers: Events created at a time.
    :param rate_per_s: Events created per second at most, after ``burst`` (``None``: no limit).
    :param burst: Events that may go at once.
    :param clock: monotonic seconds (tests).
    :param sleep: waits for the bucket (tests).
    """

    def __init__(self, kube: EventWriter, capacity: int = 5000, workers: int = 4, rate_per_s: float | None = 50.0, burst: int = 50,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity < 1 or workers < 1 or burst < 1:
            raise ValueError("capacity, workers and burst must be >= 1")
        if rate_per_s is not None and not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self.kube = kube
        self.rate_per_s, self.burst, self._clock, self._sleep = rate_per_s, burst, clock, sleep
        self._tokens, self._filled_at = float(burst), clock()
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(capacity)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="events")
        self._pending = threading.Semaphore(workers)
        self._idle = threading.Condition()
        self._in_flight = 0
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        self._thread.start()

    def emit_event(self, namespace: str, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal",
                   now: dt.datetime | None = None) -> None:
        """Queue one Event (the same arguments as :meth:`controller.kube.KubeClient.emit_event`); never blocks."""
        item = (namespace, involved, reason, message, type_, now)
        with self._idle:
            try:
                self._queue.put_nowait(item)
                self._in_flight += 1
            except queue.Full:
                self.dropped += 1
                log.warning("event_dropped", reason=reason, namespace=namespace, queued=self._queue.qsize())

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._take_token()
            self._pending.acquire()
            self._pool.submit(self._send, item)

    def _take_token(self) -> None:
        if self.rate_per_s is None:
            return
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled_at) * self.rate_per_s)
        self._filled_at = now
        if self._tokens < 1.0:
            self._sleep((1.0 - self._tokens) / self.rate_per_s)
            self._tokens, self._filled_at = 1.0, self._clock()
        self._tokens -= 1.0

    def _send(self, item: tuple[Any, ...]) -> None:
        try:
            self.kube.emit_event(*item)
            ok = True
        except KubeError as exc:
            ok = False
            log.warning("event_failed", reason=item[2], error=str(exc))
        finally:
            self._pending.release()
        with self._idle:
            self.sent += ok
            self.failed += not ok
            self._in_flight -= 1
            self._idle.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued Event was sent (or failed); ``False`` on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop."""
        self.flush(timeout_s)
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
