"""The SQLite `AccountStore`, on the connection of `SqliteMeetingStore` (tables of migration 2).

The connection is shared with the meeting store and runs in autocommit mode, so every atomic step of the
contract is one statement (`INSERT ... ON CONFLICT`, `UPDATE ... RETURNING`): an explicit transaction
would swallow the statements other requests run on the same connection meanwhile. Times are stored as
ISO 8601 text in UTC. Every statement is parameterized.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from darktower.control.accounts import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    RefreshOutcome,
    Rotation,
    User,
    UserExistsError,
)


class SqliteAccountStore:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    async def create_user(self, user: User) -> None:
        if not await self._insert_user(user):
            raise UserExistsError(user.email or "")

    async def user_by_id(self, user_id: str) -> User | None:
        return _user(
            await self._one(
                "SELECT user_id, email, display_name, password_hash, created_at FROM users WHERE user_id = ?",
                (user_id,),
            )
        )

    async def user_by_email(self, email: str) -> User | None:
        return _user(
            await self._one(
                "SELECT user_id, email, display_name, password_hash, created_at FROM users WHERE email = ?",
                (email,),
            )
        )

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._db.execute(
            "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
        )

    async def user_for_identity(self, issuer: str, subject: str) -> User | None:
        return _user(
            await self._one(
                "SELECT u.user_id, u.email, u.display_name, u.password_hash, u.created_at "
                "FROM user_identities i JOIN users u ON u.user_id = i.user_id "
                "WHERE i.issuer = ? AND i.subject = ?",
                (issuer, subject),
            )
        )

    async def link_identity(self, issuer: str, subject: str, new_user: User) -> User:
        # The identity row decides the owner first; the owner's user row is then made if it is missing
        # (also after a crash between the two statements), without an address when it is taken.
        await self._db.execute(
            "INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (issuer, subject) DO NOTHING",
            (issuer, subject, new_user.user_id, _text(new_user.created_at)),
        )
        row = await self._one(
            "SELECT user_id FROM user_identities WHERE issuer = ? AND subject = ?", (issuer, subject)
        )
        assert row is not None
        candidate = replace(new_user, user_id=str(row[0]))
        if not await self._insert_user(candidate) and candidate.email is not None:
            await self._insert_user(replace(candidate, email=None))
        user = await self.user_by_id(candidate.user_id)
        assert user is not None
        return user

    async def start_refresh_family(
        self, *, family_id: str, user_id: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        await self._db.execute(
            "INSERT INTO refresh_families (family_id, user_id, created_at) VALUES (?, ?, ?)",
            (family_id, user_id, _text(now)),
        )
        await self._insert_token(token_hash, family_id, now, expires_at)

    async def rotate_refresh_token(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> Rotation:
        spent = await self._one(
            "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
            "RETURNING family_id, expires_at",
            (_text(now), token_hash),
        )
        if spent is None:
            row = await self._one("SELECT family_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,))
            if row is None:
                return Rotation(RefreshOutcome.UNKNOWN, None, None)
            family_id = str(row[0])
            return Rotation(RefreshOutcome.REUSED, await self._revoke(family_id, now, "reuse"), family_id)
        family_id = str(spent[0])
        family = await self._one(
            "SELECT user_id, revoked_at FROM refresh_families WHERE family_id = ?", (family_id,)
        )
        assert family is not None
        user_id = str(family[0])
        if family[1] is not None:
            return Rotation(RefreshOutcome.REVOKED, user_id, family_id)
        if datetime.fromisoformat(spent[1]) <= now:
            return Rotation(RefreshOutcome.EXPIRED, user_id, family_id)
        await self._insert_token(new_token_hash, family_id, now, expires_at)
        return Rotation(RefreshOutcome.ROTATED, user_id, family_id)

    async def revoke_refresh_family(self, token_hash: str, *, now: datetime, reason: str) -> Rotation:
        row = await self._one("SELECT family_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,))
        if row is None:
            return Rotation(RefreshOutcome.UNKNOWN, None, None)
        family_id = str(row[0])
        return Rotation(RefreshOutcome.REVOKED, await self._revoke(family_id, now, reason), family_id)

    async def append_audit(self, event: AuditEvent) -> None:
        await self._db.execute(
            "INSERT INTO audit_log (at, action, outcome, user_id, ip, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (
                _text(event.at),
                event.action.value,
                event.outcome.value,
                event.user_id,
                event.ip,
                event.detail,
            ),
        )

    async def audit_log(self, *, limit: int = 100) -> list[AuditEvent]:
        rows = await self._db.execute_fetchall(
            "SELECT at, action, outcome, user_id, ip, detail FROM "
            "(SELECT * FROM audit_log ORDER BY event_id DESC LIMIT ?) ORDER BY event_id",
            (max(limit, 0),),
        )
        return [
            AuditEvent(
                at=datetime.fromisoformat(row[0]),
                action=AuditAction(row[1]),
                outcome=AuditOutcome(row[2]),
                user_id=row[3],
                ip=row[4],
                detail=row[5],
            )
            for row in rows
        ]

    async def _one(self, query: str, parameters: Iterable[Any]) -> Any:
        """The first row of `query` (run to completion, so a write in it is committed), or None."""
        rows = list(await self._db.execute_fetchall(query, parameters))
        return rows[0] if rows else None

    async def _insert_user(self, user: User) -> bool:
        """Inserts `user`; False when its id or email address is taken."""
        cursor = await self._db.execute(
            "INSERT INTO users (user_id, email, display_name, password_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (user.user_id, user.email, user.display_name, user.password_hash, _text(user.created_at)),
        )
        inserted = cursor.rowcount == 1
        await cursor.close()
        return inserted

    async def _insert_token(
        self, token_hash: str, family_id: str, now: datetime, expires_at: datetime
    ) -> None:
        await self._db.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, family_id, _text(now), _text(expires_at)),
        )

    async def _revoke(self, family_id: str, now: datetime, reason: str) -> str:
        """Revokes the family (keeping the first revocation's time and reason); returns its user."""
        await self._db.execute(
            "UPDATE refresh_families SET revoked_at = ?, revoked_reason = ? "
            "WHERE family_id = ? AND revoked_at IS NULL",
            (_text(now), reason, family_id),
        )
        row = await self._one("SELECT user_id FROM refresh_families WHERE family_id = ?", (family_id,))
        assert row is not None
        return str(row[0])


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _user(row: Any) -> User | None:
    if row is None:
        return None
    return User(
        user_id=row[0],
        email=row[1],
        display_name=row[2],
        password_hash=row[3],
        created_at=datetime.fromisoformat(row[4]),
    )
