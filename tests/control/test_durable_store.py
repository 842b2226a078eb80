"""The durable stores (SQLite and PostgreSQL), through the same tests: meetings outlive the store, the schema
is migrated exactly once by one runner with the same versions in both dialects, a failed migration changes
nothing, and a schema from a newer server is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from darktower.control.devservers import scratch_schema
from darktower.control.migrations import MIGRATIONS, Migration, MigrationReport
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.sqlite_store import SqliteMeetingStore
from darktower.control.store import Meeting, MeetingExistsError, StoreError

DurableStore = SqliteMeetingStore | PostgresMeetingStore

EXTRA = Migration(
    version=len(MIGRATIONS) + 1,
    name="notes",
    sqlite=("CREATE TABLE notes (note TEXT NOT NULL) STRICT", "INSERT INTO notes VALUES ('first')"),
    postgres=("CREATE TABLE notes (note TEXT NOT NULL)", "INSERT INTO notes VALUES ('first')"),
)
BROKEN = Migration(
    version=len(MIGRATIONS) + 1,
    name="broken",
    sqlite=("CREATE TABLE half_done (x INTEGER) STRICT", "CREATE TABLE meetings (again TEXT)"),
    postgres=("CREATE TABLE half_done (x INTEGER)", "CREATE TABLE meetings (again TEXT)"),
)


@dataclass
class Database:
    """One durable database and raw access to it, in its own dialect."""

    kind: str
    location: str

    async def open(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> DurableStore:
        if self.kind == "sqlite":
            return await SqliteMeetingStore.open(Path(self.location), migrations)
        return await PostgresMeetingStore.open(self.location, migrations=migrations)

    async def query(self, sql: str) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as db:
                rows = [tuple(row) for row in db.execute(sql)]
            db.close()
            return rows
        connection = await asyncpg.connect(self.location)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    async def tables(self) -> set[str]:
        if self.kind == "sqlite":
            rows = await self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = await self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        return {str(row[0]) for row in rows}

    async def versions(self) -> list[object]:
        return [row[0] for row in await self.query("SELECT version FROM schema_migrations ORDER BY version")]


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", str(tmp_path / "db.sqlite3"))
        return
    async with scratch_schema(request.getfixturevalue("postgres_server")) as dsn:
        yield Database("postgres", dsn)


async def test_meetings_survive_an_app_restart(
    database: Database, make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    store = await database.open()
    async with connect(make_app(store)) as client:
        created = (await client.post("/v1/meetings", json={"meeting_id": "m1", "title": "Plan"})).json()
    await store.close()

    store = await database.open()
    try:
        async with connect(make_app(store)) as client:
            assert (await client.get("/v1/meetings/m1")).json() == created
            again = await client.post("/v1/meetings", json={"meeting_id": "m1"})
            joined = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
    finally:
        await store.close()
    assert again.status_code == 409
    assert joined.status_code == 200


async def test_migrations_are_recorded_and_applied_once(database: Database) -> None:
    reports = []
    for _ in range(2):
        store = await database.open()
        reports.append(store.migration)
        assert await store.schema_version() == len(MIGRATIONS)
        await store.close()
    assert reports == [MigrationReport(0, len(MIGRATIONS)), MigrationReport(len(MIGRATIONS), len(MIGRATIONS))]
    assert list(reports[0].applied) == list(range(1, len(MIGRATIONS) + 1))
    assert not reports[1].applied
    assert await database.versions() == list(range(1, len(MIGRATIONS) + 1))
    assert {"meetings", "schema_migrations"} <= await database.tables()


async def test_a_new_migration_is_applied_to_an_existing_database(database: Database) -> None:
    store = await database.open()
    await store.create(Meeting(meeting_id="kept", title="", created_at=datetime.now(UTC)))
    await store.close()

    store = await database.open((*MIGRATIONS, EXTRA))
    try:
        assert store.migration == MigrationReport(len(MIGRATIONS), EXTRA.version)
        assert await store.get("kept") is not None
    finally:
        await store.close()
    assert await database.query("SELECT note FROM notes") == [("first",)]
    assert await database.versions() == list(range(1, EXTRA.version + 1))


async def test_a_failing_migration_leaves_the_previous_schema(database: Database) -> None:
    await (await database.open()).close()
    tables = await database.tables()

    with pytest.raises(StoreError, match="cannot use"):
        await database.open((*MIGRATIONS, BROKEN))

    assert await database.tables() == tables
    assert "half_done" not in tables
    assert await database.versions() == list(range(1, len(MIGRATIONS) + 1))
    store = await database.open()
    assert store.migration == MigrationReport(len(MIGRATIONS), len(MIGRATIONS))
    await store.close()


async def test_a_database_from_a_newer_server_is_refused(database: Database) -> None:
    store = await database.open((*MIGRATIONS, EXTRA))
    await store.close()
    with pytest.raises(
        StoreError,
        match=rf"schema version {EXTRA.version} is newer than this server supports \({len(MIGRATIONS)}\)",
    ):
        await database.open()


async def test_stores_opened_at_once_migrate_once_and_one_create_wins(database: Database) -> None:
    opened = await asyncio.gather(*(database.open() for _ in range(4)), return_exceptions=True)
    stores = [s for s in opened if isinstance(s, SqliteMeetingStore | PostgresMeetingStore)]
    try:
        assert stores == opened
        assert sorted(s.migration.previous for s in stores) == [0, *[len(MIGRATIONS)] * 3]
        meeting = Meeting(meeting_id="m", title="", created_at=datetime.now(UTC))
        results = await asyncio.gather(*(s.create(meeting) for s in stores), return_exceptions=True)
    finally:
        for store in stores:
            await store.close()
    assert results.count(None) == 1
    assert all(isinstance(r, MeetingExistsError) for r in results if r is not None)
    assert await database.versions() == list(range(1, len(MIGRATIONS) + 1))
