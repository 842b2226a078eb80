"""Rate limits on sign-in and join, as token buckets in the ephemeral store (shared by every process using
that store).

Sign-in (and registration, which costs a password hash too) takes a token from the caller's address bucket,
and a password sign-in also one from the account's bucket, so guessing one account's password from many
addresses is limited as well. Joins take a token from the address bucket. A refusal carries how long to
wait (`RateLimitedError.retry_after_s`), which the API sends as `Retry-After`.

While the ephemeral store cannot be reached, `rate_limits.when_unavailable` decides: "allow" lets requests
through unlimited (the API keeps working while Redis is down), "refuse" raises `RateLimiterUnavailableError`.
"""

from __future__ import annotations

import hashlib
import logging

from darktower.control.ephemeral import EphemeralStore, RateLimit
from darktower.control.store import ControlError, StoreUnavailableError
from darktower.core.config import RateLimitConfig

log = logging.getLogger(__name__)


class RateLimitedError(ControlError):
    def __init__(self, what: str, retry_after_s: float) -> None:
        super().__init__(f"too many {what} attempts; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class RateLimiterUnavailableError(ControlError):
    """The ephemeral store is unreachable and the policy is to refuse rather than run unlimited."""


class RateLimiter:
    def __init__(self, ephemeral: EphemeralStore, config: RateLimitConfig) -> None:
        self._store = ephemeral
        self._refuse_when_unavailable = config.when_unavailable == "refuse"
        self._login = RateLimit(config.login_burst, config.login_per_minute / 60)
        self._account = RateLimit(config.account_login_burst, config.account_login_per_minute / 60)
        self._join = RateLimit(config.join_burst, config.join_per_minute / 60)

    async def sign_in(self, ip: str, email: str | None = None) -> None:
        """One sign-in or registration attempt from `ip` (for the account `email`, when there is one)."""
        await self._take("sign-in", f"rl:login:ip:{ip}", self._login)
        if email is not None:
            account = hashlib.sha256(email.encode()).hexdigest()[:32]
            await self._take("sign-in", f"rl:login:account:{account}", self._account)

    async def join(self, ip: str) -> None:
        await self._take("join", f"rl:join:ip:{ip}", self._join)

    async def _take(self, what: str, key: str, limit: RateLimit) -> None:
        try:
            decision = await self._store.take_tokens(key, limit)
        except StoreUnavailableError as exc:
            if self._refuse_when_unavailable:
                raise RateLimiterUnavailableError(f"rate limits cannot be checked: {exc}") from None
            log.warning("rate limit not applied, the ephemeral store is unavailable: %s", exc)
            return
        if not decision.allowed:
            raise RateLimitedError(what, decision.retry_after_s)
