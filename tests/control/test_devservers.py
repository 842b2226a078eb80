"""The test harness's own servers: they run (PostgreSQL as its own user when the tests run as root), and
leave nothing running or stored behind."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
from redis.asyncio import Redis

from darktower.control.devservers import scratch_schema, throwaway_postgres, throwaway_redis


def refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def check_owned_by_the_right_user(data_dir: Path) -> None:
    if os.geteuid() == 0:
        assert data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert not data_dir.is_relative_to(Path.home())
    else:
        assert data_dir.stat().st_uid == os.geteuid()


async def test_a_throwaway_postgres_runs_and_is_gone_afterwards() -> None:
    with throwaway_postgres() as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            data_dir = Path(await connection.fetchval("SELECT current_setting('data_directory')"))
            assert await connection.fetchval("SELECT 1 + 1") == 2
        finally:
            await connection.close()
        check_owned_by_the_right_user(data_dir)
    assert refuses_connections(dsn)
    assert not data_dir.exists()  # noqa: ASYNC240 - the servers are gone, nothing else runs


async def test_a_throwaway_redis_runs_and_is_gone_afterwards() -> None:
    with throwaway_redis() as url:
        client = Redis.from_url(url)
        try:
            assert await client.ping()
            assert await client.config_get("save") == {"save": ""}
        finally:
            await client.aclose()
    assert refuses_connections(url)


async def test_a_scratch_schema_holds_the_tables_and_is_dropped_afterwards(postgres_server: str) -> None:
    async with scratch_schema(postgres_server) as dsn:
        schema = parse_qs(urlsplit(dsn).query)["search_path"][0]
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("CREATE TABLE t (x INTEGER)")
            assert await connection.fetchval("SELECT current_schema()") == schema
        finally:
            await connection.close()
    connection = await asyncpg.connect(postgres_server)
    try:
        assert await connection.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 0
    finally:
        await connection.close()
