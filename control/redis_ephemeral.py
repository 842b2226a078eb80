"""The Redis `EphemeralStore` (redis-py asyncio), shared by every control-plane process and node.

Every operation that reads and then writes is one Lua script, so it is atomic on the server, and every
deadline is computed from the Redis server's clock (`TIME`), so processes on hosts whose clocks disagree
still share one notion of "expired" and one refill rate. Keys start with the configured prefix; the keys
one script touches share a hash tag, so the scripts also run on Redis Cluster.

Keys (P = prefix): `P presence:{meeting}:workers` (hash participant -> worker) and `...:expiry` (sorted set
participant -> deadline in ms), `P owner:{meeting}`, `P bucket:{key}` (hash tokens, at in µs),
`P cache:{key}:value` and `...:version`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import redis.exceptions
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from darktower.control.ephemeral import (
    CACHE_VERSION_TTL_S,
    CachedValue,
    RateDecision,
    RateLimit,
    WorkerRef,
    ttl_ms,
)
from darktower.control.store import StoreUnavailableError

_T = TypeVar("_T")

_UNAVAILABLE: Final = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)

_NOW_MS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_PURGE_PRESENCE: Final = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
"""

_SET_PRESENCE: Final = (
    _NOW_MS
    + _PURGE_PRESENCE
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
"""
)

_GET_PRESENCE: Final = (
    _NOW_MS
    + """
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) <= now then
  return false
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""
)

_MEETING_PRESENCE: Final = _NOW_MS + _PURGE_PRESENCE + "return redis.call('HGETALL', KEYS[1])"

_CLAIM: Final = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""

_TAKE_TOKENS: Final = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate / 1000000)
  at = now
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
local full_ms = math.ceil((capacity - tokens) / rate * 1000)
if full_ms > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
  redis.call('PEXPIRE', KEYS[1], full_ms)
else
  redis.call('DEL', KEYS[1])
end
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""

_CACHE_FILL: Final = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

_CACHE_INVALIDATE: Final = """
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
"""


class RedisEphemeralStore:
    def __init__(self, client: Redis, prefix: str = "darktower:") -> None:
        self._redis = client
        self._prefix = prefix
        self._set_presence = client.register_script(_SET_PRESENCE)
        self._get_presence = client.register_script(_GET_PRESENCE)
        self._meeting_presence = client.register_script(_MEETING_PRESENCE)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._take_tokens = client.register_script(_TAKE_TOKENS)
        self._cache_fill = client.register_script(_CACHE_FILL)
        self._cache_invalidate = client.register_script(_CACHE_INVALIDATE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "darktower:", timeout_s: float = 5.0) -> RedisEphemeralStore:
        """A store on the server at `url` (redis://, rediss://, unix://); connects on first use."""
        client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        return cls(client, prefix)

    async def set_presence(
        self, meeting_id: str, participant_id: str, worker: WorkerRef, ttl_s: float
    ) -> None:
        args = (participant_id, worker.encode(), ttl_ms(ttl_s))
        await self._run(self._set_presence, self._presence_keys(meeting_id), args)

    async def get_presence(self, meeting_id: str, participant_id: str) -> WorkerRef | None:
        found = await self._run(self._get_presence, self._presence_keys(meeting_id), (participant_id,))
        return None if found is None else WorkerRef.decode(_text(found))

    async def meeting_presence(self, meeting_id: str) -> dict[str, WorkerRef]:
        flat: list[bytes] = await self._run(self._meeting_presence, self._presence_keys(meeting_id), ())
        return {_text(flat[i]): WorkerRef.decode(_text(flat[i + 1])) for i in range(0, len(flat), 2)}

    async def clear_presence(self, meeting_id: str, participant_id: str) -> None:
        workers, expiry = self._presence_keys(meeting_id)

        async def clear() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(workers, participant_id)
                pipe.zrem(expiry, participant_id)
                await pipe.execute()

        await _guard(clear)

    async def claim_meeting(self, meeting_id: str, worker: WorkerRef, ttl_s: float) -> WorkerRef:
        owner = await self._run(self._claim, (self._owner_key(meeting_id),), (worker.encode(), ttl_ms(ttl_s)))
        return WorkerRef.decode(_text(owner))

    async def meeting_owner(self, meeting_id: str) -> WorkerRef | None:
        owner = await _guard(lambda: self._redis.get(self._owner_key(meeting_id)))
        return None if owner is None else WorkerRef.decode(_text(owner))

    async def release_meeting(self, meeting_id: str, worker: WorkerRef) -> bool:
        released = await self._run(self._release, (self._owner_key(meeting_id),), (worker.encode(),))
        return bool(released)

    async def take_tokens(self, key: str, limit: RateLimit, cost: int = 1) -> RateDecision:
        limit.check_cost(cost)
        args = (limit.capacity, repr(float(limit.refill_per_s)), cost)
        allowed, remaining, retry = await self._run(self._take_tokens, (f"{self._prefix}bucket:{key}",), args)
        return RateDecision(
            allowed=bool(allowed), remaining=float(_text(remaining)), retry_after_s=float(_text(retry))
        )

    async def cache_get(self, key: str) -> CachedValue:
        value_key, version_key = self._cache_keys(key)
        value, version = await _guard(lambda: self._redis.mget([value_key, version_key]))
        assert value is None or isinstance(value, bytes)  # the client does not decode responses
        return CachedValue(value=value, version=0 if version is None else int(version))

    async def cache_fill(self, key: str, value: bytes, *, version: int, ttl_s: float) -> bool:
        filled = await self._run(
            self._cache_fill, self._cache_keys(key), (value, str(version), ttl_ms(ttl_s))
        )
        return bool(filled)

    async def cache_invalidate(self, key: str) -> None:
        await self._run(self._cache_invalidate, self._cache_keys(key), (ttl_ms(CACHE_VERSION_TTL_S),))

    async def close(self) -> None:
        await self._redis.aclose()

    def _presence_keys(self, meeting_id: str) -> tuple[str, str]:
        base = f"{self._prefix}presence:{{{meeting_id}}}"
        return f"{base}:workers", f"{base}:expiry"

    def _owner_key(self, meeting_id: str) -> str:
        return f"{self._prefix}owner:{{{meeting_id}}}"

    def _cache_keys(self, key: str) -> tuple[str, str]:
        base = f"{self._prefix}cache:{{{key}}}"
        return f"{base}:value", f"{base}:version"

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        return await _guard(lambda: script(keys=list(keys), args=list(args), client=self._redis))


async def _guard(operation: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return await operation()
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(f"Redis is unavailable: {exc or type(exc).__name__}") from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
