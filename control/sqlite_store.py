"""The SQLite `MeetingStore` (`<data_dir>/darktower.sqlite3`) and its versioned schema.

The schema is a list of numbered migrations. `schema_migrations` records each one applied; opening the store
applies the missing ones, in order, in one `BEGIN IMMEDIATE` transaction, so several processes opening one
database at once apply every migration exactly once, and a failed migration leaves the previous schema. A database written by a newer server (a
version this code does not know) is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self

import aiosqlite

from darktower.control.store import Meeting, MeetingExistsError, StoreError

DATABASE_NAME: Final = "darktower.sqlite3"

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE meetings (
            meeting_id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) STRICT
        """,
    ),
)
"""Migration n (1-based) is MIGRATIONS[n - 1]. Only ever append."""

_BUSY_TIMEOUT_S: Final = 10.0


def database_path(data_dir: str) -> Path:
    return Path(data_dir) / DATABASE_NAME


class SqliteMeetingStore:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Opens (creating if needed) the database at `path` and brings its schema up to date."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open meeting database {path}: {exc}") from None
        try:
            await _migrate(connection, path)
        except sqlite3.Error as exc:
            await connection.close()
            raise StoreError(f"cannot use meeting database {path}: {exc}") from None
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    async def schema_version(self) -> int:
        return await _current_version(self._db)

    async def create(self, meeting: Meeting) -> None:
        try:
            await self._db.execute(
                "INSERT INTO meetings (meeting_id, title, created_at) VALUES (?, ?, ?)",
                (meeting.meeting_id, meeting.title, meeting.created_at.astimezone(UTC).isoformat()),
            )
        except sqlite3.IntegrityError:
            raise MeetingExistsError(meeting.meeting_id) from None

    async def get(self, meeting_id: str) -> Meeting | None:
        async with self._db.execute(
            "SELECT meeting_id, title, created_at FROM meetings WHERE meeting_id = ?", (meeting_id,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return Meeting(meeting_id=row[0], title=row[1], created_at=datetime.fromisoformat(row[2]))

    async def close(self) -> None:
        await self._db.close()


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    # The write lock is taken before anything is read, so processes opening the database at once queue on the
    # busy timeout instead of one failing to upgrade its read lock. (The rollback journal is kept: switching
    # a fresh database to WAL races with exactly this and fails with "database is locked".)
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL) STRICT"
        )
        current = await _current_version(db)
        _check_known(current, path)
        for version in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[version - 1]:
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, datetime.now(UTC).isoformat()),
            )
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


def _check_known(version: int, path: Path) -> None:
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{path}: schema version {version} is newer than this server supports ({len(MIGRATIONS)}); "
            "upgrade darktower"
        )


async def _current_version(db: aiosqlite.Connection) -> int:
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
