"""Per-request prompt and output length distributions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenDistribution:
    """Log-normal prompt and output lengths, clipped to ``[1, max]``.

    Defaults follow the Azure conversation trace (prompt median about 1,000
    tokens, output median about 130).
    """

    prompt_median: float = 1000.0
    prompt_sigma: float = 0.8
    prompt_max: int = 8192
    output_median: float = 130.0
    output_sigma: float = 0.9
    output_max: int = 1024

    def __post_init__(self) -> None:
        if min(self.prompt_median, self.output_median) <= 0 or min(self.prompt_sigma, self.output_sigma) < 0:
            raise ValueError("token medians must be positive and sigmas non-negative")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        prompt = np.clip(np.rint(rng.lognormal(np.log(self.prompt_median), self.prompt_sigma, n)), 1, self.prompt_max)
        output = np.clip(np.rint(rng.lognormal(np.log(self.output_median), self.output_sigma, n)), 1, self.output_max)
        return prompt.astype(np.int64), output.astype(np.int64)
