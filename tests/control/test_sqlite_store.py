"""The SQLite store: meetings outlive the process, the schema is migrated exactly once, and what it cannot
use it refuses with a StoreError."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.sqlite_store import MIGRATIONS, SqliteMeetingStore
from darktower.control.store import Meeting, MeetingExistsError, StoreError


async def test_meetings_survive_an_app_restart(
    tmp_path: Path, make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    path = tmp_path / "darktower.sqlite3"
    store = await SqliteMeetingStore.open(path)
    async with connect(make_app(store)) as client:
        created = (await client.post("/v1/meetings", json={"meeting_id": "m1", "title": "Plan"})).json()
    await store.close()

    store = await SqliteMeetingStore.open(path)
    try:
        async with connect(make_app(store)) as client:
            assert (await client.get("/v1/meetings/m1")).json() == created
            again = await client.post("/v1/meetings", json={"meeting_id": "m1"})
            joined = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
    finally:
        await store.close()
    assert again.status_code == 409
    assert joined.status_code == 200


async def test_created_at_keeps_its_instant_and_zone(tmp_path: Path) -> None:
    store = await SqliteMeetingStore.open(tmp_path / "db.sqlite3")
    created = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    try:
        await store.create(Meeting(meeting_id="m", title="", created_at=created))
        assert await store.get("m") == Meeting(meeting_id="m", title="", created_at=created)
        assert await store.get("other") is None
    finally:
        await store.close()


async def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    for _ in range(2):
        store = await SqliteMeetingStore.open(path)
        assert await store.schema_version() == len(MIGRATIONS)
        await store.close()
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    db.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_stores_opened_at_once_migrate_once_and_one_create_wins(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    opened = await asyncio.gather(*(SqliteMeetingStore.open(path) for _ in range(4)), return_exceptions=True)
    stores = [s for s in opened if isinstance(s, SqliteMeetingStore)]
    try:
        assert stores == opened
        meeting = Meeting(meeting_id="m", title="", created_at=datetime.now(UTC))
        results = await asyncio.gather(*(s.create(meeting) for s in stores), return_exceptions=True)
    finally:
        for store in stores:
            await store.close()
    assert results.count(None) == 1
    assert all(isinstance(r, MeetingExistsError) for r in results if r is not None)


async def test_a_database_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await (await SqliteMeetingStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'later')", (len(MIGRATIONS) + 1,))
    db.close()
    with pytest.raises(StoreError, match=rf"schema version {len(MIGRATIONS) + 1} is newer than this server"):
        await SqliteMeetingStore.open(path)


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"cannot use meeting database .*db.sqlite3: file is not a database"):
        await SqliteMeetingStore.open(path)


async def test_an_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open meeting database"):
        await SqliteMeetingStore.open(blocker / "db.sqlite3")
