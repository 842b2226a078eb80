"""The in-process ephemeral store on a clock the test moves: exact expiry, the token bucket's guarantees over
any sequence of requests, and memory that does not keep what expired."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darktower.control.ephemeral import RateLimit, WorkerRef
from darktower.control.memory_ephemeral import InMemoryEphemeralStore

W = WorkerRef("node", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_live_exactly_their_ttl() -> None:
    clock = Clock()
    store = InMemoryEphemeralStore(clock)
    await store.set_presence("m", "p", W, 10)
    await store.claim_meeting("m", W, 10)
    await store.cache_fill("k", b"v", version=0, ttl_s=10)
    clock.now += 9.999
    assert await store.get_presence("m", "p") == W
    assert await store.meeting_owner("m") == W
    assert (await store.cache_get("k")).value == b"v"
    clock.now += 0.001
    assert await store.get_presence("m", "p") is None
    assert await store.meeting_presence("m") == {}
    assert await store.meeting_owner("m") is None
    assert (await store.cache_get("k")).value is None


async def test_an_invalidation_is_remembered_for_a_day() -> None:
    clock = Clock()
    store = InMemoryEphemeralStore(clock)
    await store.cache_invalidate("k")
    assert (await store.cache_get("k")).version == 1
    clock.now += 24 * 3600 - 1
    assert not await store.cache_fill("k", b"stale", version=0, ttl_s=10)
    clock.now += 1
    assert (await store.cache_get("k")).version == 0


async def test_expired_entries_do_not_accumulate() -> None:
    clock = Clock()
    store = InMemoryEphemeralStore(clock)
    for i in range(5000):
        await store.set_presence(f"m{i}", "p", W, 1)
        await store.take_tokens(f"k{i}", RateLimit(capacity=1, refill_per_s=1))
        clock.now += 0.1
    assert len(store._presence) < 1100
    assert len(store._buckets._entries) < 1100


requests = st.lists(
    st.tuples(st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(1, 4)), max_size=60
)


@given(
    capacity=st.integers(4, 20),
    refill_per_s=st.floats(min_value=0.01, max_value=100, allow_nan=False),
    steps=requests,
)
async def test_a_bucket_never_allows_more_than_capacity_plus_refill(
    capacity: int, refill_per_s: float, steps: list[tuple[float, int]]
) -> None:
    clock = Clock()
    start = clock.now
    store = InMemoryEphemeralStore(clock)
    limit = RateLimit(capacity=capacity, refill_per_s=refill_per_s)
    taken = 0
    for wait_s, cost in steps:
        clock.now += wait_s
        decision = await store.take_tokens("k", limit, cost)
        assert 0 <= decision.remaining <= capacity
        if decision.allowed:
            taken += cost
            assert decision.retry_after_s == 0
        else:
            assert decision.remaining < cost
            assert decision.retry_after_s == pytest.approx((cost - decision.remaining) / refill_per_s)
        assert taken <= capacity + (clock.now - start) * refill_per_s + 1e-6


@given(cost=st.integers(1, 4), refill_per_s=st.floats(min_value=0.01, max_value=100, allow_nan=False))
async def test_retrying_after_the_advised_wait_succeeds(cost: int, refill_per_s: float) -> None:
    clock = Clock()
    store = InMemoryEphemeralStore(clock)
    limit = RateLimit(capacity=4, refill_per_s=refill_per_s)
    await store.take_tokens("k", limit, 4)
    refused = await store.take_tokens("k", limit, cost)
    assert not refused.allowed
    clock.now += refused.retry_after_s * (1 + 1e-9)
    assert (await store.take_tokens("k", limit, cost)).allowed
