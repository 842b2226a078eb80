"""Short-lived shared state of the control plane: the `EphemeralStore` contract and its value types.

What lives here may be lost at any time without losing anything a user was promised: it is rebuilt by the
workers' heartbeats and by reading the durable store again. Every entry either expires (presence, meeting
placement, rate-limit buckets, cache entries) or is meaningless once old.

- Presence: which worker serves a participant of a meeting, kept alive by refreshing it before `ttl_s`.
- Meeting placement: the one worker that owns an active meeting. `claim_meeting` is atomic, so control
  planes routing the first joins of a meeting at once agree on one owner.
- Rate limits: token buckets, refilled continuously; one decision is atomic across every process sharing
  the store.
- Cache: values with a TTL, filled under a version so that a fill racing an invalidation cannot put the
  stale value back: read `cache_get` (value and version), on a miss load the value from the durable store,
  then `cache_fill(..., version=...)`, which stores it only if `cache_invalidate` has not run in between.

Implementations: `darktower.control.memory_ephemeral` (one process, the embedded default) and
`darktower.control.redis_ephemeral` (shared by every process and node). Both raise `StoreUnavailableError`
when their server cannot be reached; arguments out of range raise ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Protocol

CACHE_VERSION_TTL_S: Final = 24 * 3600.0
"""How long an invalidation is remembered. A fill that read its version longer ago than this (never in
practice: fills follow their read within a request) could store a stale value."""


@dataclass(frozen=True, slots=True)
class WorkerRef:
    """One media worker: the node it runs on and its index there."""

    node: str
    worker: int

    def encode(self) -> str:
        return f"{self.node}/{self.worker}"

    @classmethod
    def decode(cls, text: str) -> WorkerRef:
        node, _, worker = text.rpartition("/")
        return cls(node=node, worker=int(worker))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: holds up to `capacity` tokens, refilled at `refill_per_s`; a full bucket to start."""

    capacity: int
    refill_per_s: float

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"rate limit capacity must be at least 1, not {self.capacity}")
        if not (math.isfinite(self.refill_per_s) and self.refill_per_s > 0):
            raise ValueError(f"rate limit refill must be a positive rate, not {self.refill_per_s}")

    def check_cost(self, cost: int) -> None:
        if not 1 <= cost <= self.capacity:
            raise ValueError(f"a cost of {cost} is outside 1..{self.capacity} (the bucket's capacity)")

    def full_after_s(self, tokens: float) -> float:
        """Seconds until a bucket holding `tokens` is full again (and so no different from a new one)."""
        return max(0.0, self.capacity - tokens) / self.refill_per_s


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    remaining: float
    """Tokens left in the bucket after this decision."""
    retry_after_s: float
    """0 when allowed; else how long until the bucket holds enough tokens for the same cost."""


@dataclass(frozen=True, slots=True)
class CachedValue:
    value: bytes | None
    """None on a miss."""
    version: int
    """Pass to `cache_fill` after loading the value."""


def ttl_ms(ttl_s: float) -> int:
    """`ttl_s` in whole milliseconds (at least 1); ValueError unless it is positive and finite."""
    if not (math.isfinite(ttl_s) and ttl_s > 0):
        raise ValueError(f"a TTL must be a positive number of seconds, not {ttl_s}")
    return max(1, math.ceil(ttl_s * 1000))


class EphemeralStore(Protocol):
    async def set_presence(
        self, meeting_id: str, participant_id: str, worker: WorkerRef, ttl_s: float
    ) -> None:
        """Records (or refreshes) that `worker` serves the participant, for `ttl_s` seconds."""

    async def get_presence(self, meeting_id: str, participant_id: str) -> WorkerRef | None:
        """The worker serving the participant, or None (never recorded, cleared or expired)."""

    async def meeting_presence(self, meeting_id: str) -> dict[str, WorkerRef]:
        """Every participant of the meeting with live presence, and its worker."""

    async def clear_presence(self, meeting_id: str, participant_id: str) -> None:
        """Forgets the participant's presence (it left)."""

    async def claim_meeting(self, meeting_id: str, worker: WorkerRef, ttl_s: float) -> WorkerRef:
        """Makes `worker` the meeting's owner for `ttl_s` unless another live owner exists; the owner's own
        claim refreshes its TTL. Returns the owner after the call (`worker` if and only if it won)."""

    async def meeting_owner(self, meeting_id: str) -> WorkerRef | None:
        """The meeting's live owner, or None."""

    async def release_meeting(self, meeting_id: str, worker: WorkerRef) -> bool:
        """Ends `worker`'s ownership; False (and nothing changes) when it is not the owner."""

    async def take_tokens(self, key: str, limit: RateLimit, cost: int = 1) -> RateDecision:
        """Takes `cost` tokens from the bucket `key` (shaped by `limit`) if it holds that many."""

    async def cache_get(self, key: str) -> CachedValue:
        """The cached value (or None) and the version a fill must present."""

    async def cache_fill(self, key: str, value: bytes, *, version: int, ttl_s: float) -> bool:
        """Caches `value` for `ttl_s` if `key` has not been invalidated since `version` was read."""

    async def cache_invalidate(self, key: str) -> None:
        """Drops the cached value and refuses fills that read the version before now."""

    async def close(self) -> None:
        """Releases the store's resources; the store is unusable afterwards."""
