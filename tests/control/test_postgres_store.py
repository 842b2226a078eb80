"""What only the PostgreSQL store has: a server to reach, a DSN with a password to keep out of messages, and
a `search_path` that places its tables."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import asyncpg
import pytest

from darktower.control.devservers import free_port
from darktower.control.postgres_store import PostgresMeetingStore, describe_dsn
from darktower.control.store import Meeting, StoreError, StoreUnavailableError


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    dsn = f"postgresql://dt:hunter2@127.0.0.1:{free_port()}/darktower"
    with pytest.raises(
        StoreError, match=r"cannot connect to postgres://dt@127\.0\.0\.1:[0-9]+/darktower"
    ) as caught:
        await PostgresMeetingStore.open(dsn, connect_timeout_s=2)
    assert "hunter2" not in str(caught.value)


async def test_an_unknown_database_is_a_store_error(postgres_server: str) -> None:
    dsn = postgres_server.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(
        StoreError, match=r'cannot connect to .*/no_such_database: database "no_such_database"'
    ):
        await PostgresMeetingStore.open(dsn)


@pytest.mark.parametrize(
    ("dsn", "described"),
    [
        ("postgresql://u:secret@db.example:6543/prod?sslmode=require", "postgres://u@db.example:6543/prod"),
        ("postgres://db.example/prod", "postgres://db.example:5432/prod"),
        ("postgresql://[::1]:5432/x", "postgres://::1:5432/x"),
        ("postgresql://h:notaport/x", "postgres (unparsable DSN)"),
        ("db.example:5432", "postgres (unparsable DSN)"),
    ],
)
def test_a_dsn_is_described_without_its_password(dsn: str, described: str) -> None:
    assert describe_dsn(dsn) == described


async def test_each_search_path_holds_its_own_tables(postgres_dsn: str, postgres_server: str) -> None:
    scratch = await PostgresMeetingStore.open(postgres_dsn)
    try:
        await scratch.create(Meeting(meeting_id="only-here", title="", created_at=datetime.now(UTC)))
        connection = await asyncpg.connect(postgres_dsn)
        try:
            schema = await connection.fetchval("SELECT current_schema()")
            count = await connection.fetchval("SELECT count(*) FROM meetings")
        finally:
            await connection.close()
    finally:
        await scratch.close()
    assert str(schema).startswith("scratch_")
    assert count == 1


async def test_connections_ended_by_the_server_are_at_worst_unavailable_and_then_replaced(
    postgres_dsn: str,
) -> None:
    # Only this store's connections are ended (the server may be shared): they carry their own name.
    name = f"darktower-test-{secrets.token_hex(4)}"
    store = await PostgresMeetingStore.open(f"{postgres_dsn}&application_name={name}", pool_size=1)
    try:
        await store.create(Meeting(meeting_id="before", title="", created_at=datetime.now(UTC)))
        admin = await asyncpg.connect(postgres_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                name,
            )
        finally:
            await admin.close()
        assert killed == 1
        # Whether the pool notices before the next query is a race: that query either fails as unavailable
        # or already runs on a new connection.
        try:
            await store.get("before")
        except StoreUnavailableError as exc:
            assert str(exc).startswith("PostgreSQL is unavailable")  # noqa: PT017 - it may not raise at all
        assert await store.get("before") is not None
    finally:
        await store.close()
