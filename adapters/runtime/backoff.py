"""Exponential backoff with jitter, pure (the caller sleeps)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 1.0
    cap_s: float = 60.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        """Delay before the next attempt: half fixed, half random, so many sources never retry in step."""
        ceiling = min(self.cap_s, self.base_s * (2.0 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0
