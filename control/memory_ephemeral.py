"""The in-process `EphemeralStore`: the embedded default for a single control-plane process.

Entries expire by the injected monotonic `clock` (seconds). Expired entries are dropped when they are read,
and all of them every `_SWEEP_EVERY` writes, so memory stays bounded by what is live.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final, Generic, TypeVar

from darktower.control.ephemeral import (
    CACHE_VERSION_TTL_S,
    CachedValue,
    RateDecision,
    RateLimit,
    WorkerRef,
    ttl_ms,
)

_SWEEP_EVERY: Final = 1024

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Expiring(Generic[_K, _V]):
    """A mapping whose entries vanish at their own deadline."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[_K, tuple[_V, float]] = {}
        self._writes = 0

    def get(self, key: _K) -> _V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: _K, value: _V, ttl_s: float) -> None:
        self._entries[key] = (value, self._clock() + ttl_ms(ttl_s) / 1000)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self.sweep()

    def sweep(self) -> None:
        """Drops every expired entry."""
        now = self._clock()
        self._entries = {key: entry for key, entry in self._entries.items() if entry[1] > now}

    def pop(self, key: _K) -> _V | None:
        value = self.get(key)
        self._entries.pop(key, None)
        return value

    def live(self) -> Iterator[tuple[_K, _V]]:
        now = self._clock()
        return ((key, entry[0]) for key, entry in list(self._entries.items()) if entry[1] > now)

    def clear(self) -> None:
        self._entries.clear()

    def __bool__(self) -> bool:
        return bool(self._entries)


class InMemoryEphemeralStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._presence: dict[str, _Expiring[str, WorkerRef]] = {}
        self._presence_writes = 0
        self._owners: _Expiring[str, WorkerRef] = _Expiring(clock)
        self._buckets: _Expiring[str, tuple[float, float]] = _Expiring(clock)
        self._cache: _Expiring[str, bytes] = _Expiring(clock)
        self._versions: _Expiring[str, int] = _Expiring(clock)

    async def set_presence(
        self, meeting_id: str, participant_id: str, worker: WorkerRef, ttl_s: float
    ) -> None:
        meeting = self._presence.get(meeting_id)
        if meeting is None:
            meeting = self._presence[meeting_id] = _Expiring(self._clock)
        meeting.put(participant_id, worker, ttl_s)
        self._presence_writes += 1
        if self._presence_writes % _SWEEP_EVERY == 0:
            for table in self._presence.values():
                table.sweep()
            self._presence = {key: table for key, table in self._presence.items() if table}

    async def get_presence(self, meeting_id: str, participant_id: str) -> WorkerRef | None:
        meeting = self._presence.get(meeting_id)
        return None if meeting is None else meeting.get(participant_id)

    async def meeting_presence(self, meeting_id: str) -> dict[str, WorkerRef]:
        meeting = self._presence.get(meeting_id)
        return {} if meeting is None else dict(meeting.live())

    async def clear_presence(self, meeting_id: str, participant_id: str) -> None:
        meeting = self._presence.get(meeting_id)
        if meeting is not None:
            meeting.pop(participant_id)
            if not meeting:
                del self._presence[meeting_id]

    async def claim_meeting(self, meeting_id: str, worker: WorkerRef, ttl_s: float) -> WorkerRef:
        ttl_ms(ttl_s)
        owner = self._owners.get(meeting_id)
        if owner is not None and owner != worker:
            return owner
        self._owners.put(meeting_id, worker, ttl_s)
        return worker

    async def meeting_owner(self, meeting_id: str) -> WorkerRef | None:
        return self._owners.get(meeting_id)

    async def release_meeting(self, meeting_id: str, worker: WorkerRef) -> bool:
        if self._owners.get(meeting_id) != worker:
            return False
        self._owners.pop(meeting_id)
        return True

    async def take_tokens(self, key: str, limit: RateLimit, cost: int = 1) -> RateDecision:
        limit.check_cost(cost)
        now = self._clock()
        tokens, at = self._buckets.get(key) or (float(limit.capacity), now)
        if now > at:
            tokens = min(float(limit.capacity), tokens + (now - at) * limit.refill_per_s)
            at = now
        if tokens >= cost:
            tokens -= cost
            decision = RateDecision(allowed=True, remaining=tokens, retry_after_s=0.0)
        else:
            decision = RateDecision(
                allowed=False, remaining=tokens, retry_after_s=(cost - tokens) / limit.refill_per_s
            )
        full_after_s = limit.full_after_s(tokens)
        if full_after_s > 0:
            self._buckets.put(key, (tokens, at), full_after_s)
        else:
            self._buckets.pop(key)
        return decision

    async def cache_get(self, key: str) -> CachedValue:
        return CachedValue(value=self._cache.get(key), version=self._versions.get(key) or 0)

    async def cache_fill(self, key: str, value: bytes, *, version: int, ttl_s: float) -> bool:
        ttl_ms(ttl_s)
        if (self._versions.get(key) or 0) != version:
            return False
        self._cache.put(key, value, ttl_s)
        return True

    async def cache_invalidate(self, key: str) -> None:
        self._versions.put(key, (self._versions.get(key) or 0) + 1, CACHE_VERSION_TTL_S)
        self._cache.pop(key)

    async def close(self) -> None:
        self._presence.clear()
        for table in (self._owners, self._buckets, self._cache, self._versions):
            table.clear()
