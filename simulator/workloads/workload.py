"""The workload: a sorted list of requests, held column-wise in numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival.

    :param arrival_s: arrival times in seconds from the workload's start (float64, non-decreasing, >= 0).
    :param prompt_tokens: prompt length of each request (int64, >= 1).
    :param output_tokens: tokens to generate for each request (int64, >= 1).
    :param duration_s: length of the window the workload covers (>= last arrival).
    :param name: a label for tables and plots.
    :param start_time_of_day_s: wall-clock time of day at ``t = 0`` (seconds after midnight), for time-of-day features.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    duration_s: float
    name: str = "workload"
    start_time_of_day_s: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not (len(self.prompt_tokens) == n == len(self.output_tokens)):
            raise ValueError("arrival_s, prompt_tokens and output_tokens must have the same length")
        if n and (np.any(np.diff(self.arrival_s) < 0) or self.arrival_s[0] < 0):
            raise ValueError("arrival_s must be non-negative and sorted")
        if n and self.duration_s < self.arrival_s[-1]:
            raise ValueError(f"duration_s={self.duration_s} is before the last arrival {self.arrival_s[-1]}")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def mean_rate(self) -> float:
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0
