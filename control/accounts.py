"""Durable accounts: users, their OIDC identities, refresh-token families and the audit log of auth events
and of hosts' and admins' actions on meetings.

The `AccountStore` contract holds no policy (that is `darktower.control.auth`); it makes each step that must
be atomic one store operation, so two control-plane processes acting at once cannot break it:

- `create_user` claims an email address exactly once.
- `link_identity` maps an (issuer, subject) pair to exactly one user, even when two first sign-ins race.
- `rotate_refresh_token` spends a refresh token exactly once. A token presented after it was spent (its
  copy was stolen, or the client replayed it) revokes its whole family, so the thief's and the owner's
  sessions both end.

Refresh tokens are stored only as their SHA-256 (`token_hash`): they are 256-bit random strings, so a leaked
table cannot be turned back into usable tokens. A family is everything handed out from one sign-in; a
token is usable only while its family is not revoked.

Implementations: `InMemoryAccountStore` (tests), `darktower.control.sqlite_accounts`,
`darktower.control.postgres_accounts`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from darktower.control.store import ControlError


class UserExistsError(ControlError):
    """`create_user` was given an email address that another account has."""

    def __init__(self, email: str) -> None:
        super().__init__(f"an account with the email address {email!r} already exists")
        self.email = email


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str | None
    """Lower-case; None for an account made by OIDC sign-in without a (verified, unclaimed) address."""
    display_name: str
    password_hash: str | None
    """Argon2id hash; None for an account that signs in only through OIDC."""
    created_at: datetime


class RefreshOutcome(StrEnum):
    ROTATED = "rotated"
    """The token was live: it is spent now and the new one belongs to its family."""
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    """Its family was revoked (sign-out, or a reuse found earlier)."""
    REUSED = "reused"
    """It had been spent before: its family is revoked now."""


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RefreshOutcome
    user_id: str | None
    """None only for UNKNOWN."""
    family_id: str | None
    """None only for UNKNOWN."""


class AuditAction(StrEnum):
    REGISTER = "register"
    LOGIN = "login"
    OIDC_LOGIN = "oidc_login"
    REFRESH = "refresh"
    REFRESH_REUSE = "refresh_reuse"
    LOGOUT = "logout"
    MEETING_CREATE = "meeting_create"
    MEETING_UPDATE = "meeting_update"
    MEETING_END = "meeting_end"
    HOST_MUTE = "host_mute"
    HOST_REMOVE = "host_remove"
    HOST_LOCK = "host_lock"
    HOST_UNLOCK = "host_unlock"
    LOBBY_ADMIT = "lobby_admit"
    LOBBY_DENY = "lobby_deny"
    RECORDING_CREATE = "recording_create"


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    action: AuditAction
    outcome: AuditOutcome
    user_id: str | None
    """None when no account is known (a sign-in for an unknown address, an unknown token)."""
    ip: str | None
    detail: str
    """Why, for people: the address tried, the reason of a refusal."""


class AccountStore(Protocol):
    async def create_user(self, user: User) -> None:
        """Records `user`; UserExistsError when its email address is taken (compared lower-case)."""

    async def user_by_id(self, user_id: str) -> User | None: ...

    async def user_by_email(self, email: str) -> User | None:
        """The user with this (lower-case) email address, or None."""

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replaces the user's hash (after a sign-in found it made with weaker parameters)."""

    async def user_for_identity(self, issuer: str, subject: str) -> User | None:
        """The user linked to this OIDC identity, or None."""

    async def link_identity(self, issuer: str, subject: str, new_user: User) -> User:
        """The user linked to the identity, linking (and creating) `new_user` when there is none. When its
        email address is taken, `new_user` is created without one: an address never links accounts."""

    async def start_refresh_family(
        self, *, family_id: str, user_id: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        """Records a new family (one sign-in) holding its first live token."""

    async def rotate_refresh_token(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> Rotation:
        """Spends the token; when it was live (ROTATED), `new_token_hash` joins its family."""

    async def revoke_refresh_family(self, token_hash: str, *, now: datetime, reason: str) -> Rotation:
        """Revokes the family of the token (any of its tokens, spent or not): REVOKED with its user, or
        UNKNOWN."""

    async def append_audit(self, event: AuditEvent) -> None: ...

    async def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        """The last `limit` events, oldest first."""


@dataclass(slots=True)
class _Token:
    family_id: str
    expires_at: datetime
    used: bool


@dataclass(slots=True)
class _Family:
    user_id: str
    revoked: bool


class InMemoryAccountStore:
    """An `AccountStore` that forgets everything when the process ends."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._emails: dict[str, str] = {}
        self._identities: dict[tuple[str, str], str] = {}
        self._families: dict[str, _Family] = {}
        self._tokens: dict[str, _Token] = {}
        self._audit: list[AuditEvent] = []

    async def create_user(self, user: User) -> None:
        if user.email is not None and user.email in self._emails:
            raise UserExistsError(user.email)
        self._add_user(user)

    async def user_by_id(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    async def user_by_email(self, email: str) -> User | None:
        user_id = self._emails.get(email)
        return None if user_id is None else self._users[user_id]

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        if user_id in self._users:
            self._users[user_id] = replace(self._users[user_id], password_hash=password_hash)

    async def user_for_identity(self, issuer: str, subject: str) -> User | None:
        user_id = self._identities.get((issuer, subject))
        return None if user_id is None else self._users.get(user_id)

    async def link_identity(self, issuer: str, subject: str, new_user: User) -> User:
        user_id = self._identities.setdefault((issuer, subject), new_user.user_id)
        if user_id not in self._users:
            taken = new_user.email is not None and new_user.email in self._emails
            self._add_user(replace(new_user, user_id=user_id, email=None) if taken else new_user)
        return self._users[user_id]

    async def start_refresh_family(
        self, *, family_id: str, user_id: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        del now
        self._families[family_id] = _Family(user_id=user_id, revoked=False)
        self._tokens[token_hash] = _Token(family_id=family_id, expires_at=expires_at, used=False)

    async def rotate_refresh_token(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> Rotation:
        token = self._tokens.get(token_hash)
        if token is None:
            return Rotation(RefreshOutcome.UNKNOWN, None, None)
        family = self._families[token.family_id]
        if token.used:
            family.revoked = True
            return Rotation(RefreshOutcome.REUSED, family.user_id, token.family_id)
        token.used = True
        if family.revoked:
            return Rotation(RefreshOutcome.REVOKED, family.user_id, token.family_id)
        if token.expires_at <= now:
            return Rotation(RefreshOutcome.EXPIRED, family.user_id, token.family_id)
        self._tokens[new_token_hash] = _Token(family_id=token.family_id, expires_at=expires_at, used=False)
        return Rotation(RefreshOutcome.ROTATED, family.user_id, token.family_id)

    async def revoke_refresh_family(self, token_hash: str, *, now: datetime, reason: str) -> Rotation:
        del now, reason
        token = self._tokens.get(token_hash)
        if token is None:
            return Rotation(RefreshOutcome.UNKNOWN, None, None)
        family = self._families[token.family_id]
        family.revoked = True
        return Rotation(RefreshOutcome.REVOKED, family.user_id, token.family_id)

    async def append_audit(self, event: AuditEvent) -> None:
        self._audit.append(event)

    async def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        return self._audit[-limit:] if limit > 0 else []

    def _add_user(self, user: User) -> None:
        self._users[user.user_id] = user
        if user.email is not None:
            self._emails[user.email] = user.user_id
