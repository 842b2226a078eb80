"""The `EphemeralStore` contract, against every implementation (in process, Redis): presence, meeting
placement, token-bucket rate limits and versioned caches, each also under concurrent use from two handles.

Expiry runs on the store's own clock (Redis: the server's), so expiry tests use short TTLs and wait for the
entry to vanish, with a deadline."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.ephemeral import EphemeralStore, RateLimit, WorkerRef

W1 = WorkerRef("node-a", 0)
W2 = WorkerRef("node-b", 3)
SHORT_TTL_S = 0.05
LONG_TTL_S = 60.0
SLOW = RateLimit(capacity=3, refill_per_s=0.001)
"""Refills one token in 1000 s: nothing refills during a test."""


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# Presence


async def test_presence_maps_each_participant_to_its_worker(ephemeral: EphemeralStore) -> None:
    await ephemeral.set_presence("m", "p1", W1, LONG_TTL_S)
    await ephemeral.set_presence("m", "p2", W2, LONG_TTL_S)
    await ephemeral.set_presence("other", "p3", W1, LONG_TTL_S)
    assert await ephemeral.get_presence("m", "p1") == W1
    assert await ephemeral.get_presence("m", "p3") is None
    assert await ephemeral.meeting_presence("m") == {"p1": W1, "p2": W2}
    assert await ephemeral.meeting_presence("nobody-here") == {}


async def test_presence_can_move_and_be_cleared(ephemeral: EphemeralStore) -> None:
    await ephemeral.set_presence("m", "p1", W1, LONG_TTL_S)
    await ephemeral.set_presence("m", "p2", W1, LONG_TTL_S)
    await ephemeral.set_presence("m", "p1", W2, LONG_TTL_S)
    assert await ephemeral.get_presence("m", "p1") == W2
    await ephemeral.clear_presence("m", "p1")
    await ephemeral.clear_presence("m", "never-there")
    assert await ephemeral.get_presence("m", "p1") is None
    assert await ephemeral.meeting_presence("m") == {"p2": W1}


async def test_presence_expires_unless_refreshed(ephemeral: EphemeralStore) -> None:
    await ephemeral.set_presence("m", "stays", W1, LONG_TTL_S)
    await ephemeral.set_presence("m", "goes", W2, SHORT_TTL_S)
    assert await ephemeral.get_presence("m", "goes") == W2

    async def gone() -> bool:
        return await ephemeral.get_presence("m", "goes") is None

    await eventually(gone)
    assert await ephemeral.meeting_presence("m") == {"stays": W1}
    await ephemeral.set_presence("m", "goes", W2, LONG_TTL_S)
    assert await ephemeral.meeting_presence("m") == {"stays": W1, "goes": W2}


async def test_a_meetings_presence_expires_entirely(ephemeral: EphemeralStore) -> None:
    await ephemeral.set_presence("m", "p1", W1, SHORT_TTL_S)
    await ephemeral.set_presence("m", "p2", W2, SHORT_TTL_S)

    async def empty() -> bool:
        return await ephemeral.meeting_presence("m") == {}

    await eventually(empty)


# Meeting placement


async def test_the_first_claim_wins_and_later_claims_learn_the_owner(ephemeral: EphemeralStore) -> None:
    assert await ephemeral.meeting_owner("m") is None
    assert await ephemeral.claim_meeting("m", W1, LONG_TTL_S) == W1
    assert await ephemeral.claim_meeting("m", W2, LONG_TTL_S) == W1
    assert await ephemeral.claim_meeting("m", W1, LONG_TTL_S) == W1
    assert await ephemeral.meeting_owner("m") == W1
    assert await ephemeral.meeting_owner("other") is None


async def test_only_the_owner_releases_and_then_another_may_claim(ephemeral: EphemeralStore) -> None:
    await ephemeral.claim_meeting("m", W1, LONG_TTL_S)
    assert not await ephemeral.release_meeting("m", W2)
    assert await ephemeral.meeting_owner("m") == W1
    assert await ephemeral.release_meeting("m", W1)
    assert not await ephemeral.release_meeting("m", W1)
    assert await ephemeral.meeting_owner("m") is None
    assert await ephemeral.claim_meeting("m", W2, LONG_TTL_S) == W2


async def test_an_owner_that_stops_refreshing_loses_the_meeting(ephemeral: EphemeralStore) -> None:
    await ephemeral.claim_meeting("m", W1, SHORT_TTL_S)

    async def taken_over() -> bool:
        return await ephemeral.claim_meeting("m", W2, LONG_TTL_S) == W2

    await eventually(taken_over)
    assert await ephemeral.meeting_owner("m") == W2


async def test_racing_claims_from_two_processes_agree_on_one_owner(
    ephemeral_handles: list[EphemeralStore],
) -> None:
    workers = [WorkerRef(f"node-{i}", i) for i in range(20)]
    owners = await asyncio.gather(
        *(ephemeral_handles[i % 2].claim_meeting("m", worker, LONG_TTL_S) for i, worker in enumerate(workers))
    )
    assert len(set(owners)) == 1
    assert owners[0] in workers
    assert await ephemeral_handles[1].meeting_owner("m") == owners[0]


# Rate limits


async def test_a_bucket_allows_its_capacity_then_says_when_to_retry(ephemeral: EphemeralStore) -> None:
    decisions = [await ephemeral.take_tokens("login:ada", SLOW) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [round(d.remaining) for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].retry_after_s == 0
    assert decisions[3].retry_after_s == pytest.approx(1000, abs=1)
    assert (await ephemeral.take_tokens("login:bob", SLOW)).allowed


async def test_a_cost_takes_that_many_tokens_or_none(ephemeral: EphemeralStore) -> None:
    limit = RateLimit(capacity=5, refill_per_s=0.001)
    assert (await ephemeral.take_tokens("k", limit, cost=4)).allowed
    refused = await ephemeral.take_tokens("k", limit, cost=2)
    assert not refused.allowed
    assert refused.remaining == pytest.approx(1, abs=0.01)
    assert refused.retry_after_s == pytest.approx(1000, abs=10)
    assert (await ephemeral.take_tokens("k", limit, cost=1)).allowed


async def test_a_bucket_refills_over_time(ephemeral: EphemeralStore) -> None:
    limit = RateLimit(capacity=1, refill_per_s=50)
    assert (await ephemeral.take_tokens("k", limit)).allowed
    refused = await ephemeral.take_tokens("k", limit)
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 0.02 + 1e-9

    async def refilled() -> bool:
        return (await ephemeral.take_tokens("k", limit)).allowed

    await eventually(refilled)


async def test_concurrent_takes_from_two_processes_never_exceed_the_capacity(
    ephemeral_handles: list[EphemeralStore],
) -> None:
    limit = RateLimit(capacity=10, refill_per_s=0.0001)
    decisions = await asyncio.gather(
        *(ephemeral_handles[i % 2].take_tokens("join", limit) for i in range(40))
    )
    assert sum(d.allowed for d in decisions) == 10


@pytest.mark.parametrize("cost", [0, -1, 4])
async def test_a_cost_outside_the_capacity_is_a_value_error(ephemeral: EphemeralStore, cost: int) -> None:
    with pytest.raises(ValueError, match=f"a cost of {cost} is outside 1..3"):
        await ephemeral.take_tokens("k", SLOW, cost=cost)


@pytest.mark.parametrize(
    ("capacity", "refill"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, math.inf), (1, math.nan)]
)
def test_a_bucket_needs_a_positive_capacity_and_rate(capacity: int, refill: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit(capacity=capacity, refill_per_s=refill)


# Cache


async def test_a_filled_value_is_served_until_invalidated(ephemeral: EphemeralStore) -> None:
    miss = await ephemeral.cache_get("meeting:m")
    assert miss.value is None
    value = bytes(range(256))
    assert await ephemeral.cache_fill("meeting:m", value, version=miss.version, ttl_s=LONG_TTL_S)
    assert (await ephemeral.cache_get("meeting:m")).value == value
    await ephemeral.cache_invalidate("meeting:m")
    after = await ephemeral.cache_get("meeting:m")
    assert after.value is None
    assert after.version != miss.version
    assert (await ephemeral.cache_get("meeting:other")).value is None


async def test_a_fill_that_raced_an_invalidation_is_refused(ephemeral_handles: list[EphemeralStore]) -> None:
    reader, writer = ephemeral_handles
    read = await reader.cache_get("k")
    await writer.cache_invalidate("k")
    assert not await reader.cache_fill("k", b"stale", version=read.version, ttl_s=LONG_TTL_S)
    assert (await writer.cache_get("k")).value is None
    fresh = await reader.cache_get("k")
    assert await reader.cache_fill("k", b"fresh", version=fresh.version, ttl_s=LONG_TTL_S)
    assert (await writer.cache_get("k")).value == b"fresh"


async def test_a_cached_value_expires(ephemeral: EphemeralStore) -> None:
    read = await ephemeral.cache_get("k")
    assert await ephemeral.cache_fill("k", b"v", version=read.version, ttl_s=SHORT_TTL_S)

    async def expired() -> bool:
        return (await ephemeral.cache_get("k")).value is None

    await eventually(expired)


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, math.inf, math.nan])
async def test_a_ttl_must_be_positive_and_finite(ephemeral: EphemeralStore, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="a TTL must be a positive number of seconds"):
        await ephemeral.set_presence("m", "p", W1, ttl_s)
    with pytest.raises(ValueError, match="a TTL must be a positive number of seconds"):
        await ephemeral.claim_meeting("m", W1, ttl_s)
    with pytest.raises(ValueError, match="a TTL must be a positive number of seconds"):
        await ephemeral.cache_fill("k", b"v", version=0, ttl_s=ttl_s)
    assert await ephemeral.get_presence("m", "p") is None
    assert await ephemeral.meeting_owner("m") is None


# Any names


names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    meeting_id=names,
    participant_id=names,
    node=names,
    index=st.integers(0, 1023),
    key=names,
    value=st.binary(),
)
async def test_any_names_and_values_round_trip(
    ephemeral: EphemeralStore,
    meeting_id: str,
    participant_id: str,
    node: str,
    index: int,
    key: str,
    value: bytes,
) -> None:
    # Each example gets names of its own: the store is shared by all examples of the test.
    unique = secrets.token_hex(4)
    meeting_id, key = meeting_id + unique, key + unique
    worker = WorkerRef(node, index)
    await ephemeral.set_presence(meeting_id, participant_id, worker, LONG_TTL_S)
    assert await ephemeral.get_presence(meeting_id, participant_id) == worker
    assert await ephemeral.meeting_presence(meeting_id) == {participant_id: worker}
    assert await ephemeral.claim_meeting(meeting_id, worker, LONG_TTL_S) == worker
    assert await ephemeral.meeting_owner(meeting_id) == worker
    assert (await ephemeral.take_tokens(key, SLOW)).allowed
    assert await ephemeral.cache_fill(key, value, version=0, ttl_s=LONG_TTL_S)
    assert (await ephemeral.cache_get(key)).value == value
