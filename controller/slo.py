"""Latency service-level objective of one scale target."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TTFT_S = 0.5
DEFAULT_TPOT_S = 0.05


@dataclass(frozen=True)
class SLO:
    """A request meets the SLO when both its TTFT and its TPOT are within bounds.

    :param ttft_s: time to first token bound, seconds (default 500 ms).
    :param tpot_s: time per output token (inter-token latency) bound, seconds (default 50 ms).
    """

    ttft_s: float = DEFAULT_TTFT_S
    tpot_s: float = DEFAULT_TPOT_S

    def __post_init__(self) -> None:
        if not (self.ttft_s > 0 and self.tpot_s > 0):
            raise ValueError(f"SLO bounds must be positive, got ttft_s={self.ttft_s}, tpot_s={self.tpot_s}")

    def met(self, ttft_s: float, tpot_s: float) -> bool:
        return ttft_s <= self.ttft_s and tpot_s <= self.tpot_s
