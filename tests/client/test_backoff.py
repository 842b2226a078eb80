"""Reconnect delays grow exponentially up to a cap, with jitter that spreads clients apart."""

from __future__ import annotations

import random

from darktower.client.backoff import ReconnectPolicy


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_s=0.25, maximum_s=5.0, multiplier=2.0, jitter=0.5)
    assert [policy.delay(n, Fixed(0.0)) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_takes_off_at_most_its_share() -> None:
    policy = ReconnectPolicy(initial_s=1.0, maximum_s=8.0, jitter=0.5)
    assert policy.delay(2, Fixed(0.999999)) > 2.0
    rng = random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(200)]
    assert all(4.0 < d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100
