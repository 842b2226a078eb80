"""The PostgreSQL `MeetingStore` (asyncpg connection pool), for deployments with more than one box.

Opening the store applies the missing migrations of `darktower.control.migrations` in one transaction that
first takes a transaction-scoped advisory lock: that lock is the schema lock, so control planes starting at
once apply every migration exactly once, and PostgreSQL's transactional DDL leaves the previous schema when a
migration fails. Every statement is parameterized.

Tables are created in the connection's `search_path` (a DSN may set it: `...?search_path=tenant`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Self
from urllib.parse import urlsplit

import asyncpg

from darktower.control.migrations import MIGRATIONS, Dialect, Migration, MigrationReport, apply_migrations
from darktower.control.postgres_accounts import PostgresAccountStore
from darktower.control.postgres_meeting_records import PostgresMeetingRecords
from darktower.control.postgres_pool import UNAVAILABLE, PostgresQueries, reason
from darktower.control.store import Meeting, MeetingExistsError, PageCursor, RoomSettings, StoreError

SCHEMA_LOCK_KEY: Final = 0x4454_5343_4845_4D41
"""Advisory lock id held while migrating ("DTSCHEMA")."""
_COLUMNS: Final = (
    "meeting_id, title, created_at, created_by, scheduled_start, ended_at, max_participants, e2ee_required, "
    "guests_allowed, lobby, recording_allowed, host_user_ids"
)


def describe_dsn(dsn: str) -> str:
    """`dsn` without its password, for messages and logs."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "postgres (unparsable DSN)"
    if parts.scheme not in {"postgres", "postgresql"}:
        return "postgres (unparsable DSN)"
    user = f"{parts.username}@" if parts.username else ""
    return f"postgres://{user}{host}:{port}{parts.path}"


class PostgresMeetingStore:
    def __init__(self, pool: asyncpg.Pool, migration: MigrationReport) -> None:
        self._queries = PostgresQueries(pool)
        self.migration = migration
        """What opening the store did to the schema."""
        self.accounts = PostgresAccountStore(self._queries)
        """The accounts kept in the same database (closed with this store)."""
        self._records = PostgresMeetingRecords(self._queries)

    @property
    def records(self) -> PostgresMeetingRecords:
        return self._records

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> Self:
        """Connects to `dsn` and brings its schema up to date; StoreError when either fails."""
        where = describe_dsn(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=pool_size, timeout=connect_timeout_s, command_timeout=None
            )
        except (*UNAVAILABLE, asyncpg.PostgresError, ValueError) as exc:
            raise StoreError(f"cannot connect to {where}: {reason(exc)}") from None
        try:
            async with pool.acquire() as connection:
                report = await migrate_postgres(connection, where, migrations)
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            await pool.close()
            raise StoreError(f"cannot use {where}: {reason(exc)}") from None
        except BaseException:
            await pool.close()
            raise
        return cls(pool, report)

    async def schema_version(self) -> int:
        value = await self._queries.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(value)

    async def create(self, meeting: Meeting) -> None:
        settings = meeting.settings
        status = await self._queries.execute(
            f"INSERT INTO meetings ({_COLUMNS}) "  # noqa: S608 (constant)
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (meeting_id) DO NOTHING",
            meeting.meeting_id,
            meeting.title,
            meeting.created_at,
            meeting.created_by,
            meeting.scheduled_start,
            meeting.ended_at,
            settings.max_participants,
            settings.e2ee_required,
            settings.guests_allowed,
            settings.lobby,
            settings.recording_allowed,
            list(meeting.hosts),
        )
        if status != "INSERT 0 1":
            raise MeetingExistsError(meeting.meeting_id)

    async def get(self, meeting_id: str) -> Meeting | None:
        row = await self._queries.fetchrow(
            f"SELECT {_COLUMNS} FROM meetings WHERE meeting_id = $1",  # noqa: S608 (constant)
            meeting_id,
        )
        return None if row is None else _meeting(row)

    async def update(self, meeting: Meeting) -> bool:
        settings = meeting.settings
        status = await self._queries.execute(
            "UPDATE meetings SET title = $2, scheduled_start = $3, max_participants = $4, e2ee_required = $5, "
            "guests_allowed = $6, lobby = $7, recording_allowed = $8, host_user_ids = $9 WHERE meeting_id = $1",
            meeting.meeting_id,
            meeting.title,
            meeting.scheduled_start,
            settings.max_participants,
            settings.e2ee_required,
            settings.guests_allowed,
            settings.lobby,
            settings.recording_allowed,
            list(meeting.hosts),
        )
        return status == "UPDATE 1"

    async def end(self, meeting_id: str, at: datetime) -> Meeting | None:
        row = await self._queries.fetchrow(
            f"UPDATE meetings SET ended_at = COALESCE(ended_at, $2) WHERE meeting_id = $1 RETURNING {_COLUMNS}",  # noqa: S608
            meeting_id,
            at,
        )
        return None if row is None else _meeting(row)

    async def list_for_user(self, user_id: str, *, limit: int, after: PageCursor | None) -> list[Meeting]:
        mine = "(created_by = $1 OR host_user_ids @> ARRAY[$1]::text[])"
        if after is None:
            rows = await self._queries.fetch(
                f"SELECT {_COLUMNS} FROM meetings WHERE {mine} "  # noqa: S608 (constant fragments)
                "ORDER BY created_at DESC, meeting_id DESC LIMIT $2",
                user_id,
                limit,
            )
        else:
            rows = await self._queries.fetch(
                f"SELECT {_COLUMNS} FROM meetings WHERE {mine} "  # noqa: S608 (constant fragments)
                "AND (created_at, meeting_id) < ($3, $4) ORDER BY created_at DESC, meeting_id DESC LIMIT $2",
                user_id,
                limit,
                after.created_at,
                after.meeting_id,
            )
        return [_meeting(row) for row in rows]

    async def close(self) -> None:
        await self._queries.pool.close()


def _meeting(row: asyncpg.Record) -> Meeting:
    return Meeting(
        meeting_id=row["meeting_id"],
        title=row["title"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        scheduled_start=row["scheduled_start"],
        ended_at=row["ended_at"],
        settings=RoomSettings(
            max_participants=row["max_participants"],
            e2ee_required=row["e2ee_required"],
            guests_allowed=row["guests_allowed"],
            lobby=row["lobby"],
            recording_allowed=row["recording_allowed"],
        ),
        hosts=tuple(row["host_user_ids"]),
    )


async def migrate_postgres(
    connection: asyncpg.Connection, where: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> MigrationReport:
    """Applies the missing `migrations` through `connection` in one transaction holding the schema lock."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        return await apply_migrations(_PostgresSchemaSession(connection), where, migrations)


class _PostgresSchemaSession:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> Dialect:
        return Dialect.POSTGRES

    async def current_version(self) -> int:
        await self._connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        return int(await self._connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    async def execute(self, statement: str) -> None:
        await self._connection.execute(statement)

    async def record(self, version: int) -> None:
        await self._connection.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", version
        )
