"""Drive a simulated replica engine in real time for the stub server.

Engine time is wall time since start divided by ``time_scale`` (0.1 makes
the replica ten times faster than the GPU it models). A background task
advances the engine every ``tick_s`` and wakes the requests that have something
to send: their first token, ``stream_interval`` new tokens (vLLM's
``--stream-interval``), or their end.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller import signals as sig
from simulator.engine.activity import KernelActivity
from simulator.engine.metrics import Histogram
from simulator.engine.replica import FinishedRequest, ReplicaEngine


@dataclass
class InFlight:
    """A request being served: the event is set whenever it has something to send."""

    rid: int
    prompt_tokens: int
    output_tokens: int
    event: asyncio.Event
    done: FinishedRequest | None = None
    seen: int = -1


class RealTimeEngine:
    """Owns a :class:`ReplicaEngine`; every call happens on the event loop's thread.

    It also keeps what ``/metrics`` reports beyond the engine's sink: the engine's busy spans
    (:attr:`activity`, for ``DCGM_FI_DEV_GPU_UTIL``) and the prompt and generation tokens of each
    finished request (vLLM's ``vllm:request_prompt_tokens`` and ``vllm:request_generation_tokens``).
    """

    def __init__(self, engine: ReplicaEngine, *, time_scale: float = 1.0, tick_s: float = 0.01, stream_interval: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        if stream_interval < 1:
            raise ValueError(f"stream_interval must be at least 1 token, got {stream_interval}")
        self.stream_interval = stream_interval
        self.engine = engine
        self.time_scale = time_scale
        self.tick_s = tick_s
        self._clock = clock
        self._start = clock()
        self._ids = itertools.count()
        self._inflight: dict[int, InFlight] = {}
        self._task: asyncio.Task | None = None
        self.activity = KernelActivity()
        self.prompt_tokens = Histogram(sig.REQUEST_TOKEN_BUCKETS)
        self.generation_tokens = Histogram(sig.REQUEST_TOKEN_BUCKETS)

    def now(self) -> float:
        """Engine time (seconds)."""
        return (self._clock() - self._start) / self.time_scale

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def submit(self, prompt_tokens: int, output_tokens: int) -> InFlight | None:
        """Queue a request now; ``None`` when the engine refuses it (full queue or too long)."""
        now = self.now()
        self.engine.advance(now)
        self.activity.before_submit(self.engine, now)
        rid = next(self._ids)
        if not self.engine.submit(rid, now, prompt_tokens, output_tokens):
            return None
        flight = InFlight(rid, prompt_tokens, output_tokens, asyncio.Event())
        self._inflight[rid] = flight
        return flight

    def progress(self, flight: InFlight) -> tuple[float | None, int]:
        if flight.done is not None:
            return flight.done.first_token_s, flight.output_tokens
        return self.engine.progress(flight.rid)

    def step(self) -> None:
        """Advance to now and wake the requests with something to send (first token, a chunk's worth of tokens, done)."""
        self.engine.advance(self.now())
        for done in self.engine.finished:
            self.prompt_tokens.observe(done.prompt_tokens)
            self.generation_tokens.observe(done.output_tokens)
            flight = self._inflight.pop(done.rid, None)
            if flight is not None:
                flight.done = done
                flight.event.set()
        self.engine.finished.clear()
        for flight in self._inflight.values():
            first, generated = self.engine.progress(flight.rid)
            if first is not None and (flight.seen < 0 or generated - flight.seen >= self.stream_interval):
                flight.seen = generated
                flight.event.set()

    async def _run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(self.tick_s)
