"""The SQLite `MeetingStore` (`<data_dir>/darktower.sqlite3`), the embedded default.

Opening the store applies the missing migrations of `darktower.control.migrations` inside one
`BEGIN IMMEDIATE` transaction: SQLite's write lock is the schema lock, so several processes opening one
database at once apply every migration exactly once.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self

import aiosqlite

from darktower.control.migrations import MIGRATIONS, Dialect, Migration, MigrationReport, apply_migrations
from darktower.control.sqlite_accounts import SqliteAccountStore
from darktower.control.store import Meeting, MeetingExistsError, StoreError

DATABASE_NAME: Final = "darktower.sqlite3"

_BUSY_TIMEOUT_S: Final = 10.0


def database_path(data_dir: str) -> Path:
    return Path(data_dir) / DATABASE_NAME


class SqliteMeetingStore:
    def __init__(self, connection: aiosqlite.Connection, migration: MigrationReport) -> None:
        self._db = connection
        self.migration = migration
        """What opening the store did to the schema."""
        self.accounts = SqliteAccountStore(connection)
        """The accounts kept in the same database (closed with this store)."""

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
        try:
            await self._db.execute(
                "INSERT INTO meetings (meeting_id, title, created_at, created_by) VALUES (?, ?, ?, ?)",
                (
                    meeting.meeting_id,
                    meeting.title,
                    meeting.created_at.astimezone(UTC).isoformat(),
                    meeting.created_by,
                ),
            )
        except sqlite3.IntegrityError:
            raise MeetingExistsError(meeting.meeting_id) from None

    async def get(self, meeting_id: str) -> Meeting | None:
        async with self._db.execute(
            "SELECT meeting_id, title, created_at, created_by FROM meetings WHERE meeting_id = ?",
            (meeting_id,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return Meeting(
            meeting_id=row[0], title=row[1], created_at=datetime.fromisoformat(row[2]), created_by=row[3]
        )

    async def close(self) -> None:
        await self._db.close()


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
