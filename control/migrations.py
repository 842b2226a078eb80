"""The durable schema as numbered migrations, and the one runner that applies them to SQLite and PostgreSQL.

Migration n means the same change in both dialects: each `Migration` carries its SQLite and its PostgreSQL
statements side by side, so the two schemas cannot drift apart in version or meaning. Only ever append.

A dialect adapter (`SchemaSession`) gives the runner one connection inside a transaction that holds the
database's schema lock, so processes starting at once apply each migration exactly once, and a failing
migration leaves the previous schema. A database at a version this code does not know (written by a newer
server) is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from darktower.control.store import StoreError


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect is Dialect.SQLITE else self.postgres


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        version=1,
        name="meetings",
        sqlite=(
            """
            CREATE TABLE meetings (
                meeting_id TEXT PRIMARY KEY,
                title TEXT NOT NULL,
                created_at TEXT NOT NULL
            ) STRICT
            """,
        ),
        postgres=(
            """
            CREATE TABLE meetings (
                meeting_id TEXT PRIMARY KEY,
                title TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )
            """,
        ),
    ),
    Migration(
        version=2,
        name="accounts",
        sqlite=(
            "ALTER TABLE meetings ADD COLUMN created_by TEXT",
            """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY,
                email TEXT UNIQUE,
                display_name TEXT NOT NULL,
                password_hash TEXT,
                created_at TEXT NOT NULL
            ) STRICT
            """,
            """
            CREATE TABLE user_identities (
                issuer TEXT NOT NULL,
                subject TEXT NOT NULL,
                user_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (issuer, subject)
            ) STRICT
            """,
            """
            CREATE TABLE refresh_families (
                family_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                revoked_at TEXT,
                revoked_reason TEXT
            ) STRICT
            """,
            """
            CREATE TABLE refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                family_id TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                used_at TEXT
            ) STRICT
            """,
            """
            CREATE TABLE audit_log (
                event_id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                action TEXT NOT NULL,
                outcome TEXT NOT NULL,
                user_id TEXT,
                ip TEXT,
                detail TEXT NOT NULL
            ) STRICT
            """,
            """
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
            """,
            """
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
            """,
        ),
        postgres=(
            "ALTER TABLE meetings ADD COLUMN created_by TEXT",
            """
            CREATE TABLE users (
                user_id TEXT PRIMARY KEY,
                email TEXT UNIQUE,
                display_name TEXT NOT NULL,
                password_hash TEXT,
                created_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE user_identities (
                issuer TEXT NOT NULL,
                subject TEXT NOT NULL,
                user_id TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (issuer, subject)
            )
            """,
            """
            CREATE TABLE refresh_families (
                family_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                revoked_at TIMESTAMPTZ,
                revoked_reason TEXT
            )
            """,
            """
            CREATE TABLE refresh_tokens (
                token_hash TEXT PRIMARY KEY,
                family_id TEXT NOT NULL,
                issued_at TIMESTAMPTZ NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL,
                used_at TIMESTAMPTZ
            )
            """,
            """
            CREATE TABLE audit_log (
                event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL,
                action TEXT NOT NULL,
                outcome TEXT NOT NULL,
                user_id TEXT,
                ip TEXT,
                detail TEXT NOT NULL
            )
            """,
            """
            CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only';
            END
            $$
            """,
            """
            CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
            """,
            """
            CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()
            """,
        ),
    ),
    Migration(
        version=3,
        name="meeting settings, history, recordings, lobby",
        sqlite=(
            "ALTER TABLE meetings ADD COLUMN scheduled_start TEXT",
            "ALTER TABLE meetings ADD COLUMN ended_at TEXT",
            "ALTER TABLE meetings ADD COLUMN max_participants INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE meetings ADD COLUMN e2ee_required INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE meetings ADD COLUMN guests_allowed INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE meetings ADD COLUMN lobby INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE meetings ADD COLUMN recording_allowed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE meetings ADD COLUMN host_user_ids TEXT NOT NULL DEFAULT '[]'",
            "CREATE INDEX meetings_by_creator ON meetings (created_by, created_at, meeting_id)",
            """
            CREATE TABLE meeting_history (
                event_id INTEGER PRIMARY KEY AUTOINCREMENT,
                source TEXT NOT NULL UNIQUE,
                meeting_id TEXT NOT NULL,
                participant_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                role TEXT NOT NULL,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                at TEXT NOT NULL
            ) STRICT
            """,
            "CREATE INDEX meeting_history_by_meeting ON meeting_history (meeting_id, event_id)",
            """
            CREATE TABLE recordings (
                recording_id TEXT PRIMARY KEY,
                meeting_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                created_by TEXT,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                location TEXT NOT NULL,
                size_bytes INTEGER NOT NULL
            ) STRICT
            """,
            "CREATE INDEX recordings_by_meeting ON recordings (meeting_id, started_at)",
            """
            CREATE TABLE lobby_requests (
                request_id TEXT PRIMARY KEY,
                ticket_hash TEXT NOT NULL UNIQUE,
                meeting_id TEXT NOT NULL,
                participant_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                user_id TEXT,
                viewer INTEGER NOT NULL,
                publish INTEGER NOT NULL,
                subscribe INTEGER NOT NULL,
                status TEXT NOT NULL,
                requested_at TEXT NOT NULL,
                decided_at TEXT,
                decided_by TEXT
            ) STRICT
            """,
            "CREATE INDEX lobby_requests_by_meeting ON lobby_requests (meeting_id, status, requested_at)",
        ),
        postgres=(
            "ALTER TABLE meetings ADD COLUMN scheduled_start TIMESTAMPTZ",
            "ALTER TABLE meetings ADD COLUMN ended_at TIMESTAMPTZ",
            "ALTER TABLE meetings ADD COLUMN max_participants INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE meetings ADD COLUMN e2ee_required BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE meetings ADD COLUMN guests_allowed BOOLEAN NOT NULL DEFAULT true",
            "ALTER TABLE meetings ADD COLUMN lobby BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE meetings ADD COLUMN recording_allowed BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE meetings ADD COLUMN host_user_ids TEXT[] NOT NULL DEFAULT '{}'",
            "CREATE INDEX meetings_by_creator ON meetings (created_by, created_at, meeting_id)",
            "CREATE INDEX meetings_by_host ON meetings USING GIN (host_user_ids)",
            """
            CREATE TABLE meeting_history (
                event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                source TEXT NOT NULL UNIQUE,
                meeting_id TEXT NOT NULL,
                participant_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                role TEXT NOT NULL,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                at TIMESTAMPTZ NOT NULL
            )
            """,
            "CREATE INDEX meeting_history_by_meeting ON meeting_history (meeting_id, event_id)",
            """
            CREATE TABLE recordings (
                recording_id TEXT PRIMARY KEY,
                meeting_id TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                created_by TEXT,
                started_at TIMESTAMPTZ NOT NULL,
                ended_at TIMESTAMPTZ,
                location TEXT NOT NULL,
                size_bytes BIGINT NOT NULL
            )
            """,
            "CREATE INDEX recordings_by_meeting ON recordings (meeting_id, started_at)",
            """
            CREATE TABLE lobby_requests (
                request_id TEXT PRIMARY KEY,
                ticket_hash TEXT NOT NULL UNIQUE,
                meeting_id TEXT NOT NULL,
                participant_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                user_id TEXT,
                viewer BOOLEAN NOT NULL,
                publish BOOLEAN NOT NULL,
                subscribe BOOLEAN NOT NULL,
                status TEXT NOT NULL,
                requested_at TIMESTAMPTZ NOT NULL,
                decided_at TIMESTAMPTZ,
                decided_by TEXT
            )
            """,
            "CREATE INDEX lobby_requests_by_meeting ON lobby_requests (meeting_id, status, requested_at)",
        ),
    ),
)
"""Migration n is MIGRATIONS[n - 1]."""


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What opening a durable store did to its schema."""

    previous: int
    """Schema version found (0: a new database)."""
    current: int
    """Schema version now."""

    @property
    def applied(self) -> range:
        return range(self.previous + 1, self.current + 1)


class SchemaSession(Protocol):
    """One connection of `dialect`, inside a transaction that holds the schema lock until it ends."""

    @property
    def dialect(self) -> Dialect: ...

    async def current_version(self) -> int:
        """The highest version recorded, creating the (empty) record table when it is missing."""

    async def execute(self, statement: str) -> None:
        """Runs one migration statement."""

    async def record(self, version: int) -> None:
        """Records that `version` has been applied, with the time it was."""


async def apply_migrations(
    session: SchemaSession, where: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> MigrationReport:
    """Brings the schema in `session` up to the last of `migrations`; `where` names the database in errors."""
    check_sequence(migrations)
    previous = await session.current_version()
    if previous > len(migrations):
        raise StoreError(
            f"{where}: schema version {previous} is newer than this server supports ({len(migrations)}); "
            "upgrade darktower"
        )
    for migration in migrations[previous:]:
        for statement in migration.statements(session.dialect):
            await session.execute(statement)
        await session.record(migration.version)
    return MigrationReport(previous=previous, current=len(migrations))


def check_sequence(migrations: tuple[Migration, ...]) -> None:
    """Versions must be 1, 2, 3, ... with statements in both dialects (a programming error otherwise)."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, expected {index}"
            )
        if not migration.sqlite or not migration.postgres:
            raise ValueError(f"migration {index} ({migration.name}) lacks statements for a dialect")
