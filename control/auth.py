"""Accounts and sessions: registration, password and OIDC sign-in, refresh-token rotation, sign-out, and
the audit record of each, independent of HTTP.

A sign-in yields a `TokenPair`: a short-lived access token (`darktower.control.access_tokens`) and an opaque
refresh token (256 random bits, stored only as its SHA-256) that starts a new family. Each refresh spends
its token and returns a new pair of the same family; a spent token presented again revokes the family
(see `darktower.control.accounts`). Every outcome, success or failure, is appended to the audit log before
the caller gets its answer, so nothing reaches a client that the log does not hold.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from darktower.control.access_tokens import AccessClaims, AccessTokenError, AccessTokens
from darktower.control.accounts import (
    AccountStore,
    AuditAction,
    AuditEvent,
    AuditOutcome,
    RefreshOutcome,
    User,
    UserExistsError,
)
from darktower.control.passwords import PasswordHasher
from darktower.control.store import ControlError

log = logging.getLogger(__name__)


class InvalidCredentialsError(ControlError):
    """Wrong address or password (deliberately not saying which)."""


class RegistrationClosedError(ControlError):
    pass


class InvalidRefreshTokenError(ControlError):
    def __init__(self, outcome: RefreshOutcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class TokenPair:
    user_id: str
    access_token: str
    expires_at: int
    """When the access token expires (Unix seconds)."""
    refresh_token: str
    refresh_expires_at: datetime


_REFUSALS = {
    RefreshOutcome.UNKNOWN: "refresh token is not known",
    RefreshOutcome.EXPIRED: "refresh token has expired; sign in again",
    RefreshOutcome.REVOKED: "refresh token was revoked (signed out); sign in again",
    RefreshOutcome.REUSED: "refresh token was already used; every session of that sign-in is revoked",
}


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        passwords: PasswordHasher,
        access_tokens: AccessTokens,
        refresh_ttl_s: int,
        open_registration: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = accounts
        self._passwords = passwords
        self._access = access_tokens
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)
        self._open_registration = open_registration
        self._clock = clock

    async def register(self, *, email: str, password: str, display_name: str, ip: str) -> User:
        """Creates a password account; RegistrationClosedError, UserExistsError."""
        if not self._open_registration:
            await self.record(AuditAction.REGISTER, AuditOutcome.FAILURE, None, ip, f"closed: {email}")
            raise RegistrationClosedError("registration is closed; sign in through your organisation")
        user = User(
            user_id=secrets.token_urlsafe(12),
            email=email,
            display_name=display_name,
            password_hash=await self._passwords.hash(password),
            created_at=self._now(),
        )
        try:
            await self.accounts.create_user(user)
        except UserExistsError:
            await self.record(AuditAction.REGISTER, AuditOutcome.FAILURE, None, ip, f"address taken: {email}")
            raise
        await self.record(AuditAction.REGISTER, AuditOutcome.SUCCESS, user.user_id, ip, email)
        return user

    async def login(self, *, email: str, password: str, ip: str) -> TokenPair:
        """A new session for the account; InvalidCredentialsError."""
        user = await self.accounts.user_by_email(email)
        stored = user.password_hash if user is not None else None
        verified = await self._passwords.verify(stored, password)  # also without an account: same time
        if not verified or user is None or stored is None:
            why = (
                "no such account"
                if user is None
                else "no password set"
                if stored is None
                else "wrong password"
            )
            await self.record(
                AuditAction.LOGIN,
                AuditOutcome.FAILURE,
                user.user_id if user else None,
                ip,
                f"{why}: {email}",
            )
            raise InvalidCredentialsError("wrong email address or password")
        if self._passwords.needs_rehash(stored):
            await self.accounts.set_password_hash(user.user_id, await self._passwords.hash(password))
        await self.record(AuditAction.LOGIN, AuditOutcome.SUCCESS, user.user_id, ip, email)
        return await self._start_session(user.user_id)

    async def sign_in_identity(
        self, *, issuer: str, subject: str, email: str | None, display_name: str, ip: str
    ) -> TokenPair:
        """A new session for the user linked to the OIDC identity, creating that user on first sign-in."""
        candidate = User(
            user_id=secrets.token_urlsafe(12),
            email=email,
            display_name=display_name,
            password_hash=None,
            created_at=self._now(),
        )
        user = await self.accounts.link_identity(issuer, subject, candidate)
        detail = f"{issuer} {subject}" + (" (new account)" if user.user_id == candidate.user_id else "")
        await self.record(AuditAction.OIDC_LOGIN, AuditOutcome.SUCCESS, user.user_id, ip, detail)
        return await self._start_session(user.user_id)

    async def refresh(self, *, refresh_token: str, ip: str) -> TokenPair:
        """The next pair of the token's session; InvalidRefreshTokenError (a reuse also revokes it)."""
        new_token = secrets.token_urlsafe(32)
        now = self._now()
        expires_at = now + self._refresh_ttl
        rotation = await self.accounts.rotate_refresh_token(
            refresh_token_hash(refresh_token),
            new_token_hash=refresh_token_hash(new_token),
            now=now,
            expires_at=expires_at,
        )
        if rotation.outcome is RefreshOutcome.REUSED:
            log.warning("refresh token reused; session revoked", extra={"event": "refresh_reuse"})
            await self.record(
                AuditAction.REFRESH_REUSE,
                AuditOutcome.FAILURE,
                rotation.user_id,
                ip,
                f"session {rotation.family_id} revoked",
            )
        elif rotation.outcome is not RefreshOutcome.ROTATED:
            await self.record(
                AuditAction.REFRESH, AuditOutcome.FAILURE, rotation.user_id, ip, rotation.outcome.value
            )
        if rotation.outcome is not RefreshOutcome.ROTATED:
            raise InvalidRefreshTokenError(rotation.outcome, _REFUSALS[rotation.outcome])
        assert rotation.user_id is not None
        assert rotation.family_id is not None
        await self.record(AuditAction.REFRESH, AuditOutcome.SUCCESS, rotation.user_id, ip, rotation.family_id)
        return self._pair(rotation.user_id, rotation.family_id, new_token, expires_at)

    async def logout(self, *, refresh_token: str, ip: str) -> None:
        """Revokes the session (family) of the token; InvalidRefreshTokenError when it is not known."""
        revoked = await self.accounts.revoke_refresh_family(
            refresh_token_hash(refresh_token), now=self._now(), reason="logout"
        )
        if revoked.outcome is RefreshOutcome.UNKNOWN:
            await self.record(AuditAction.LOGOUT, AuditOutcome.FAILURE, None, ip, "unknown refresh token")
            raise InvalidRefreshTokenError(revoked.outcome, _REFUSALS[revoked.outcome])
        await self.record(
            AuditAction.LOGOUT, AuditOutcome.SUCCESS, revoked.user_id, ip, str(revoked.family_id)
        )

    def authenticate(self, access_token: str) -> AccessClaims:
        """The claims of a valid access token; AccessTokenError."""
        return self._access.verify(access_token, now=self._clock())

    async def current_user(self, access_token: str) -> User:
        """The account an access token stands for; AccessTokenError when it is invalid or the account
        is gone."""
        claims = self.authenticate(access_token)
        user = await self.accounts.user_by_id(claims.user_id)
        if user is None:
            raise AccessTokenError("the account of this access token no longer exists")
        return user

    async def record(
        self, action: AuditAction, outcome: AuditOutcome, user_id: str | None, ip: str | None, detail: str
    ) -> None:
        """Appends one event to the audit log."""
        event = AuditEvent(
            at=self._now(), action=action, outcome=outcome, user_id=user_id, ip=ip, detail=detail
        )
        await self.accounts.append_audit(event)
        log.info("auth %s: %s", action.value, outcome.value, extra={"event": action.value})

    async def _start_session(self, user_id: str) -> TokenPair:
        token, now = secrets.token_urlsafe(32), self._now()
        family_id = secrets.token_urlsafe(16)
        expires_at = now + self._refresh_ttl
        await self.accounts.start_refresh_family(
            family_id=family_id,
            user_id=user_id,
            token_hash=refresh_token_hash(token),
            now=now,
            expires_at=expires_at,
        )
        return self._pair(user_id, family_id, token, expires_at)

    def _pair(
        self, user_id: str, family_id: str, refresh_token: str, refresh_expires_at: datetime
    ) -> TokenPair:
        access_token, claims = self._access.issue(user_id=user_id, session_id=family_id, now=self._clock())
        return TokenPair(
            user_id=user_id,
            access_token=access_token,
            expires_at=claims.expires_at,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)
