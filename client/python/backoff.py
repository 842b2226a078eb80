"""How long a client waits before each attempt to rejoin after its media session dropped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential back-off with jitter: attempt n (from 0) waits min(maximum, initial * multiplier**n), less
    up to `jitter` of it at random, so many clients dropped at once do not come back in lockstep."""

    initial_s: float = 0.25
    maximum_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int = 10

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum_s, self.initial_s * self.multiplier**attempt)
        return base * (1 - self.jitter * rng.random())
