"""The PostgreSQL `AccountStore`, on the pool of `PostgresMeetingStore` (tables of migration 2).

Each atomic step of the contract is one statement (an `INSERT ... ON CONFLICT` or an `UPDATE ... WHERE`
that only one caller can win), so no transaction spans round trips. Every statement is parameterized.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import asyncpg

from darktower.control.accounts import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    RefreshOutcome,
    Rotation,
    User,
    UserExistsError,
)
from darktower.control.postgres_pool import PostgresQueries


class PostgresAccountStore:
    def __init__(self, queries: PostgresQueries) -> None:
        self._q = queries

    async def create_user(self, user: User) -> None:
        if not await self._insert_user(user):
            raise UserExistsError(user.email or "")

    async def user_by_id(self, user_id: str) -> User | None:
        return _user(
            await self._q.fetchrow(
                "SELECT user_id, email, display_name, password_hash, created_at FROM users WHERE user_id = $1",
                user_id,
            )
        )

    async def user_by_email(self, email: str) -> User | None:
        return _user(
            await self._q.fetchrow(
                "SELECT user_id, email, display_name, password_hash, created_at FROM users WHERE email = $1",
                email,
            )
        )

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._q.execute(
            "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
        )

    async def user_for_identity(self, issuer: str, subject: str) -> User | None:
        return _user(
            await self._q.fetchrow(
                "SELECT u.user_id, u.email, u.display_name, u.password_hash, u.created_at "
                "FROM user_identities i JOIN users u ON u.user_id = i.user_id "
                "WHERE i.issuer = $1 AND i.subject = $2",
                issuer,
                subject,
            )
        )

    async def link_identity(self, issuer: str, subject: str, new_user: User) -> User:
        # The identity row decides the owner first; the owner's user row is then made if it is missing
        # (also after a crash between the two statements), without an address when it is taken.
        await self._q.execute(
            "INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (issuer, subject) DO NOTHING",
            issuer,
            subject,
            new_user.user_id,
            new_user.created_at,
        )
        owner = str(
            await self._q.fetchval(
                "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2", issuer, subject
            )
        )
        candidate = replace(new_user, user_id=owner)
        if not await self._insert_user(candidate) and candidate.email is not None:
            await self._insert_user(replace(candidate, email=None))
        user = await self.user_by_id(owner)
        assert user is not None
        return user

    async def start_refresh_family(
        self, *, family_id: str, user_id: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        await self._q.execute(
            "INSERT INTO refresh_families (family_id, user_id, created_at) VALUES ($1, $2, $3)",
            family_id,
            user_id,
            now,
        )
        await self._insert_token(token_hash, family_id, now, expires_at)

    async def rotate_refresh_token(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> Rotation:
        spent = await self._q.fetchrow(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL "
            "RETURNING family_id, expires_at",
            token_hash,
            now,
        )
        if spent is None:
            family_id = await self._q.fetchval(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", token_hash
            )
            if family_id is None:
                return Rotation(RefreshOutcome.UNKNOWN, None, None)
            user_id = await self._revoke(family_id, now, "reuse")
            return Rotation(RefreshOutcome.REUSED, user_id, family_id)
        family = await self._q.fetchrow(
            "SELECT user_id, revoked_at FROM refresh_families WHERE family_id = $1", spent["family_id"]
        )
        assert family is not None
        family_id, user_id = spent["family_id"], family["user_id"]
        if family["revoked_at"] is not None:
            return Rotation(RefreshOutcome.REVOKED, user_id, family_id)
        if spent["expires_at"] <= now:
            return Rotation(RefreshOutcome.EXPIRED, user_id, family_id)
        await self._insert_token(new_token_hash, family_id, now, expires_at)
        return Rotation(RefreshOutcome.ROTATED, user_id, family_id)

    async def revoke_refresh_family(self, token_hash: str, *, now: datetime, reason: str) -> Rotation:
        family_id = await self._q.fetchval(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        if family_id is None:
            return Rotation(RefreshOutcome.UNKNOWN, None, None)
        user_id = await self._revoke(family_id, now, reason)
        return Rotation(RefreshOutcome.REVOKED, user_id, family_id)

    async def append_audit(self, event: AuditEvent) -> None:
        await self._q.execute(
            "INSERT INTO audit_log (at, action, outcome, user_id, ip, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            event.at,
            event.action.value,
            event.outcome.value,
            event.user_id,
            event.ip,
            event.detail,
        )

    async def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        rows = await self._q.fetch(
            "SELECT at, action, outcome, user_id, ip, detail FROM "
            "(SELECT * FROM audit_log ORDER BY event_id DESC LIMIT $1) AS recent ORDER BY event_id",
            max(limit, 0),
        )
        return [
            AuditEvent(
                at=row["at"],
                action=AuditAction(row["action"]),
                outcome=AuditOutcome(row["outcome"]),
                user_id=row["user_id"],
                ip=row["ip"],
                detail=row["detail"],
            )
            for row in rows
        ]

    async def _insert_user(self, user: User) -> bool:
        """Inserts `user`; False when its id or email address is taken."""
        status = await self._q.execute(
            "INSERT INTO users (user_id, email, display_name, password_hash, created_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            user.user_id,
            user.email,
            user.display_name,
            user.password_hash,
            user.created_at,
        )
        return bool(status == "INSERT 0 1")

    async def _insert_token(
        self, token_hash: str, family_id: str, now: datetime, expires_at: datetime
    ) -> None:
        await self._q.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
            token_hash,
            family_id,
            now,
            expires_at,
        )

    async def _revoke(self, family_id: str, now: datetime, reason: str) -> str:
        """Revokes the family (keeping the first revocation's time and reason); returns its user."""
        await self._q.execute(
            "UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3 "
            "WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
            reason,
        )
        return str(
            await self._q.fetchval("SELECT user_id FROM refresh_families WHERE family_id = $1", family_id)
        )


def _user(row: asyncpg.Record | None) -> User | None:
    if row is None:
        return None
    return User(
        user_id=row["user_id"],
        email=row["email"],
        display_name=row["display_name"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
    )
