"""The iteration-time protocol that engines consume."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, runtime_checkable


@runtime_checkable
class IterationTimeModel(Protocol):
    """Time of one engine iteration on one replica, in milliseconds.

    One continuous-batching iteration runs ``prefill_tokens`` new prompt tokens
    (chunks of one or more prompts; ``prefill_context`` is the sum over those
    tokens of the context each attends to, i.e. ``L*(L+1)/2`` for a whole
    prompt of length ``L``) together with one decode step for ``decode_batch``
    sequences whose KV caches hold ``decode_context`` tokens in total;
    ``prefill_seqs`` is the number of prompts the prefill tokens belong to.
    """

    def iteration_ms(
        self, prefill_tokens: int, prefill_context: float, decode_batch: int, decode_context: float, prefill_seqs: int = 1
    ) -> float: ...

    def prefill_ms(self, batch: int, prompt_len: int) -> float:
        """One forward over ``batch`` prompts of ``prompt_len`` tokens."""
        ...

    def decode_ms(self, batch: int, context_len: int) -> float:
        """One decode step for ``batch`` sequences of ``context_len`` cached tokens each."""
        ...


def decode_times(model: IterationTimeModel) -> Callable[[int], Callable[[float], float]]:
    """``batch -> (c -> model.iteration_ms(0, 0.0, batch, c))``: decode-only iteration time by batch size.

    A model may offer cheaper functions with the same results bit for bit
    (its own ``decode_time(batch)``, e.g. :class:`~simulator.profiles.roofline.SpecLatencyModel`);
    the engine's decode runs call them most.
    """
    own = getattr(model, "decode_time", None)
    return own if own is not None else lambda batch: partial(model.iteration_ms, 0, 0.0, batch)
