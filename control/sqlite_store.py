"""The SQLite `MeetingStore` (`<data_dir>/darktower.sqlite3`), the embedded default.

Opening the store applies the missing migrations of `darktower.control.migrations` inside one
`BEGIN IMMEDIATE` transaction: SQLite's write lock is the schema lock, so several processes opening one
database at once apply every migration exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Self

import aiosqlite

from darktower.control.migrations import MIGRATIONS, Dialect, Migration, MigrationReport, apply_migrations
from darktower.control.sqlite_accounts import SqliteAccountStore
from darktower.control.sqlite_meeting_records import SqliteMeetingRecords, text, time_of
from darktower.control.store import Meeting, MeetingExistsError, PageCursor, RoomSettings, StoreError

DATABASE_NAME: Final = "darktower.sqlite3"

_BUSY_TIMEOUT_S: Final = 10.0
_COLUMNS: Final = (
    "meeting_id, title, created_at, created_by, scheduled_start, ended_at, max_participants, e2ee_required, "
    "guests_allowed, lobby, recording_allowed, host_user_ids"
)


def database_path(data_dir: str) -> Path:
    return Path(data_dir) / DATABASE_NAME


class SqliteMeetingStore:
    def __init__(self, connection: aiosqlite.Connection, migration: MigrationReport) -> None:
        self._db = connection
        self.migration = migration
        """What opening the store did to the schema."""
        self.accounts = SqliteAccountStore(connection)
        """The accounts kept in the same database (closed with this store)."""
        self._records = SqliteMeetingRecords(connection)

    @property
    def records(self) -> SqliteMeetingRecords:
        return self._records

    @classmethod
    async def open(cls, path: Path, migrations: tuple[Migration, ...] = MIGRATIONS) -> Self:
        """Opens (creating if needed) the database at `path` and brings its schema up to date."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open meeting database {path}: {exc}") from None
        try:
            report = await migrate_sqlite(connection, str(path), migrations)
        except sqlite3.Error as exc:
            await connection.close()
            raise StoreError(f"cannot use meeting database {path}: {exc}") from None
        except BaseException:
            await connection.close()
            raise
        return cls(connection, report)

    async def schema_version(self) -> int:
        async with self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def create(self, meeting: Meeting) -> None:
        settings = meeting.settings
        try:
            await self._db.execute(
                f"INSERT INTO meetings ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (constant)
                (
                    meeting.meeting_id,
                    meeting.title,
                    text(meeting.created_at),
                    meeting.created_by,
                    None if meeting.scheduled_start is None else text(meeting.scheduled_start),
                    None if meeting.ended_at is None else text(meeting.ended_at),
                    settings.max_participants,
                    settings.e2ee_required,
                    settings.guests_allowed,
                    settings.lobby,
                    settings.recording_allowed,
                    json.dumps(list(meeting.hosts)),
                ),
            )
        except sqlite3.IntegrityError:
            raise MeetingExistsError(meeting.meeting_id) from None

    async def get(self, meeting_id: str) -> Meeting | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM meetings WHERE meeting_id = ?",  # noqa: S608 (constant)
            (meeting_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _meeting(row)

    async def update(self, meeting: Meeting) -> bool:
        settings = meeting.settings
        async with self._db.execute(
            "UPDATE meetings SET title = ?, scheduled_start = ?, max_participants = ?, e2ee_required = ?, "
            "guests_allowed = ?, lobby = ?, recording_allowed = ?, host_user_ids = ? WHERE meeting_id = ?",
            (
                meeting.title,
                None if meeting.scheduled_start is None else text(meeting.scheduled_start),
                settings.max_participants,
                settings.e2ee_required,
                settings.guests_allowed,
                settings.lobby,
                settings.recording_allowed,
                json.dumps(list(meeting.hosts)),
                meeting.meeting_id,
            ),
        ) as cursor:
            return cursor.rowcount == 1

    async def end(self, meeting_id: str, at: datetime) -> Meeting | None:
        await self._db.execute(
            "UPDATE meetings SET ended_at = ? WHERE meeting_id = ? AND ended_at IS NULL",
            (text(at), meeting_id),
        )
        return await self.get(meeting_id)

    async def list_for_user(self, user_id: str, *, limit: int, after: PageCursor | None) -> list[Meeting]:
        mine = "(created_by = ? OR EXISTS (SELECT 1 FROM json_each(meetings.host_user_ids) WHERE value = ?))"
        parameters: tuple[Any, ...] = (user_id, user_id)
        page = ""
        if after is not None:
            page = " AND (created_at < ? OR (created_at = ? AND meeting_id < ?))"
            created = text(after.created_at)
            parameters += (created, created, after.meeting_id)
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM meetings WHERE {mine}{page} "  # noqa: S608 (constant fragments)
            "ORDER BY created_at DESC, meeting_id DESC LIMIT ?",
            (*parameters, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_meeting(row) for row in rows]

    async def close(self) -> None:
        await self._db.close()


def _meeting(row: Any) -> Meeting:
    return Meeting(
        meeting_id=row[0],
        title=row[1],
        created_at=time_of(row[2]),
        created_by=row[3],
        scheduled_start=None if row[4] is None else time_of(row[4]),
        ended_at=None if row[5] is None else time_of(row[5]),
        settings=RoomSettings(
            max_participants=row[6],
            e2ee_required=bool(row[7]),
            guests_allowed=bool(row[8]),
            lobby=bool(row[9]),
            recording_allowed=bool(row[10]),
        ),
        hosts=tuple(json.loads(row[11])),
    )


async def migrate_sqlite(
    db: aiosqlite.Connection, where: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> MigrationReport:
    """Applies the missing `migrations` to `db` (in autocommit mode) in one transaction."""
    # The write lock is taken before anything is read, so processes opening the database at once queue on the
    # busy timeout instead of one failing to upgrade its read lock. (The rollback journal is kept: switching
    # a fresh database to WAL races with exactly this and fails with "database is locked".)
    await db.execute("BEGIN IMMEDIATE")
    try:
        report = await apply_migrations(_SqliteSchemaSession(db), where, migrations)
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")
    return report


class _SqliteSchemaSession:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @property
    def dialect(self) -> Dialect:
        return Dialect.SQLITE

    async def current_version(self) -> int:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
        )
        async with self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def execute(self, statement: str) -> None:
        await self._db.execute(statement)

    async def record(self, version: int) -> None:
        await self._db.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (version, datetime.now(UTC).isoformat()),
        )
