"""The `[store]` configuration picks the stores: the control-plane process serves from the configured durable
store, `darktower migrate` migrates it, and the ephemeral store is in process or on Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from darktower.control.backends import open_ephemeral_store
from darktower.control.devservers import free_port
from darktower.control.ephemeral import WorkerRef
from darktower.control.main import run_control
from darktower.control.memory_ephemeral import InMemoryEphemeralStore
from darktower.control.migrations import MIGRATIONS
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.store import StoreError
from darktower.core.config import Config, from_mapping
from darktower.supervisor.cli import main as cli_main


def postgres_config(tmp_path: Path, dsn: str) -> Config:
    return from_mapping(
        {
            "server": {"data_dir": str(tmp_path / "data"), "http_port": 0},
            "store": {"durable": "postgres", "postgres_dsn": dsn},
        }
    )


async def serve_once(config: Config, action: str) -> httpx.Response:
    """Starts the control plane, sends one request, stops it."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_control(config, 4999, on_ready=ready.set_result, stop=stop))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            if action == "create":
                return await http.post("/v1/meetings", json={"meeting_id": "kept", "title": "On Postgres"})
            return await http.get("/v1/meetings/kept")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_the_control_plane_serves_from_postgres_when_configured(
    tmp_path: Path, postgres_dsn: str
) -> None:
    config = postgres_config(tmp_path, postgres_dsn)
    created = await serve_once(config, "create")
    assert created.status_code == 201
    read = await serve_once(config, "get")
    assert read.json() == created.json()
    assert not (tmp_path / "data" / "darktower.sqlite3").exists()


async def test_an_unreachable_postgres_stops_the_control_plane_before_it_is_ready(tmp_path: Path) -> None:
    config = postgres_config(tmp_path, f"postgresql://dt@127.0.0.1:{free_port()}/dt")
    with pytest.raises(StoreError, match=r"cannot connect to postgres://dt@127\.0\.0\.1"):
        await run_control(config, 4999, on_ready=lambda _port: pytest.fail("ready"), stop=asyncio.Event())


def test_migrate_applies_the_sqlite_schema_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = str(tmp_path / "data")
    assert cli_main(["migrate", "--data-dir", data_dir]) == 0
    first = capsys.readouterr().out
    assert cli_main(["migrate", "--data-dir", data_dir]) == 0
    second = capsys.readouterr().out
    versions = ", ".join(str(m.version) for m in MIGRATIONS)
    assert first == (
        f"{tmp_path / 'data' / 'darktower.sqlite3'}: migrated from schema version 0 to {len(MIGRATIONS)} "
        f"(applied {versions})\n"
    )
    assert second.endswith(f"schema version {len(MIGRATIONS)} is current; nothing to apply\n")


def test_migrate_applies_the_postgres_schema_named_by_the_environment(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DARKTOWER_STORE__DURABLE", "postgres")
    monkeypatch.setenv("DARKTOWER_STORE__POSTGRES_DSN", postgres_dsn)
    assert cli_main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("postgres://postgres@127.0.0.1:")
    assert f"migrated from schema version 0 to {len(MIGRATIONS)}" in out


def test_migrate_reports_an_unreachable_store_with_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DARKTOWER_STORE__DURABLE", "postgres")
    monkeypatch.setenv("DARKTOWER_STORE__POSTGRES_DSN", f"postgresql://dt:pw@127.0.0.1:{free_port()}/dt")
    monkeypatch.setenv("DARKTOWER_STORE__CONNECT_TIMEOUT_S", "2")
    assert cli_main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("darktower: cannot connect to postgres://dt@127.0.0.1:")
    assert ":pw@" not in err


def test_migrate_refuses_a_bad_store_config_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DARKTOWER_STORE__DURABLE", "postgres")
    assert cli_main(["migrate"]) == 2
    assert 'store.postgres_dsn: required when store.durable = "postgres"' in capsys.readouterr().err


async def test_the_ephemeral_store_is_in_process_by_default() -> None:
    store = open_ephemeral_store(from_mapping({}))
    try:
        assert isinstance(store, InMemoryEphemeralStore)
    finally:
        await store.close()


async def test_the_ephemeral_store_is_redis_when_configured(redis_server: str, redis_prefix: str) -> None:
    config = from_mapping(
        {"store": {"ephemeral": "redis", "redis_url": redis_server, "redis_key_prefix": redis_prefix}}
    )
    stores = [open_ephemeral_store(config) for _ in range(2)]
    try:
        assert all(isinstance(s, RedisEphemeralStore) for s in stores)
        await stores[0].claim_meeting("m", WorkerRef("n", 0), 30)
        assert await stores[1].meeting_owner("m") == WorkerRef("n", 0)
    finally:
        for store in stores:
            await store.close()
