"""What only the Redis ephemeral store has: a server that can be down, keys other deployments share a server
with, a script cache that a restart empties, and memory that must not fill up with forgotten keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from darktower.control.devservers import free_port
from darktower.control.ephemeral import EphemeralStore, RateLimit, WorkerRef
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.store import StoreUnavailableError

W = WorkerRef("node", 1)
LIMIT = RateLimit(capacity=2, refill_per_s=0.5)


@pytest.fixture
async def raw(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: str, redis_prefix: str) -> AsyncIterator[RedisEphemeralStore]:
    opened = RedisEphemeralStore.from_url(redis_server, prefix=redis_prefix)
    yield opened
    await opened.close()


async def use_everything(store: EphemeralStore) -> None:
    await store.set_presence("m", "p1", W, 30)
    await store.set_presence("m", "p2", W, 60)
    await store.clear_presence("m", "p2")
    await store.meeting_presence("m")
    await store.claim_meeting("m", W, 30)
    await store.take_tokens("login:ada", LIMIT)
    read = await store.cache_get("meeting:m")
    await store.cache_fill("meeting:m", b"v", version=read.version, ttl_s=30)
    await store.cache_invalidate("meeting:m")
    await store.cache_fill("meeting:m", b"v", version=read.version + 1, ttl_s=30)


async def test_every_key_is_under_the_prefix_and_expires(
    store: RedisEphemeralStore, raw: Redis, redis_prefix: str
) -> None:
    await use_everything(store)
    keys = [key.decode() async for key in raw.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) >= 6
    for key in keys:
        assert 0 < await raw.pttl(key) <= 24 * 3600 * 1000, key


async def test_two_prefixes_share_a_server_without_seeing_each_other(redis_server: str) -> None:
    first = RedisEphemeralStore.from_url(redis_server, prefix="deployment-a:")
    second = RedisEphemeralStore.from_url(redis_server, prefix="deployment-b:")
    try:
        await first.claim_meeting("shared-id", W, 30)
        assert await second.meeting_owner("shared-id") is None
        await first.release_meeting("shared-id", W)
    finally:
        await first.close()
        await second.close()


async def test_the_scripts_survive_a_flushed_script_cache(store: RedisEphemeralStore, raw: Redis) -> None:
    await use_everything(store)
    await raw.script_flush()
    assert await store.claim_meeting("m2", W, 30) == W
    assert await store.get_presence("m", "p1") == W


OPERATIONS: dict[str, Callable[[EphemeralStore], Awaitable[object]]] = {
    "set_presence": lambda s: s.set_presence("m", "p", W, 1),
    "get_presence": lambda s: s.get_presence("m", "p"),
    "meeting_presence": lambda s: s.meeting_presence("m"),
    "clear_presence": lambda s: s.clear_presence("m", "p"),
    "claim_meeting": lambda s: s.claim_meeting("m", W, 1),
    "meeting_owner": lambda s: s.meeting_owner("m"),
    "release_meeting": lambda s: s.release_meeting("m", W),
    "take_tokens": lambda s: s.take_tokens("k", LIMIT),
    "cache_get": lambda s: s.cache_get("k"),
    "cache_fill": lambda s: s.cache_fill("k", b"v", version=0, ttl_s=1),
    "cache_invalidate": lambda s: s.cache_invalidate("k"),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_operation_on_an_unreachable_server_is_store_unavailable(operation: str) -> None:
    store = RedisEphemeralStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
    try:
        with pytest.raises(StoreUnavailableError, match="Redis is unavailable"):
            await OPERATIONS[operation](store)
    finally:
        await store.close()
