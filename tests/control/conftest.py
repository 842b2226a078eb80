"""Fixtures of the control-plane tests: a configuration in a temporary data directory, every meeting store,
both ephemeral stores, real PostgreSQL and Redis servers, and an HTTP client talking to the ASGI app in process.

PostgreSQL and Redis are the servers named by `DARKTOWER_TEST_POSTGRES_DSN` / `DARKTOWER_TEST_REDIS_URL`
when set; otherwise a throwaway cluster and redis-server (`darktower.control.devservers`) started on first
use and stopped when the session ends. Each test gets its own PostgreSQL schema and Redis key prefix, so
tests never see each other's data, even on a shared server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.app import create_app
from darktower.control.devservers import scratch_schema, throwaway_postgres, throwaway_redis
from darktower.control.ephemeral import EphemeralStore
from darktower.control.memory_ephemeral import InMemoryEphemeralStore
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.sqlite_store import SqliteMeetingStore, database_path
from darktower.control.store import InMemoryMeetingStore, MeetingStore
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenSigner, TokenVerifier

QUIC_PORT = 4999
HASHES = [bytes(range(32)), bytes(32)]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_mapping({"server": {"data_dir": str(tmp_path / "data"), "public_host": "media.example"}})


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """DSN of a PostgreSQL server the tests may create schemas in."""
    if dsn := os.environ.get("DARKTOWER_TEST_POSTGRES_DSN"):
        yield dsn
        return
    with throwaway_postgres() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a Redis server the tests may write keys to (each test under its own prefix)."""
    if url := os.environ.get("DARKTOWER_TEST_REDIS_URL"):
        yield url
        return
    with throwaway_redis() as url:
        yield url


@pytest.fixture
async def postgres_dsn(postgres_server: str) -> AsyncIterator[str]:
    """A DSN whose tables land in a schema of their own, dropped after the test."""
    async with scratch_schema(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def redis_prefix() -> str:
    return f"darktower-test-{secrets.token_hex(8)}:"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[MeetingStore]:
    async with contextlib.AsyncExitStack() as stack:
        opened: MeetingStore
        if request.param == "memory":
            opened = InMemoryMeetingStore()
        elif request.param == "sqlite":
            opened = await SqliteMeetingStore.open(database_path(config.server.data_dir))
        else:
            dsn = await stack.enter_async_context(scratch_schema(request.getfixturevalue("postgres_server")))
            opened = await PostgresMeetingStore.open(dsn)
        yield opened
        await opened.close()


@pytest.fixture
def signer(token_keys: tuple[TokenSigner, TokenVerifier]) -> TokenSigner:
    return token_keys[0]


@pytest.fixture
def verifier(token_keys: tuple[TokenSigner, TokenVerifier]) -> TokenVerifier:
    return token_keys[1]


@pytest.fixture
def make_app(config: Config, signer: TokenSigner) -> Callable[..., FastAPI]:
    """Builds the app over a store, with the test configuration and fixed certificate hashes by default."""

    def make(
        store: MeetingStore,
        *,
        app_config: Config | None = None,
        certificate_hashes: Callable[[], list[bytes]] | None = None,
    ) -> FastAPI:
        return create_app(
            config=app_config or config,
            signer=signer,
            store=store,
            certificate_hashes=certificate_hashes or (lambda: list(HASHES)),
            quic_port=QUIC_PORT,
        )

    return make


@pytest.fixture
def connect() -> Callable[[FastAPI], httpx.AsyncClient]:
    """An HTTP client that talks to an app in process."""

    def make(app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://control.test")

    return make


@pytest.fixture
async def client(
    store: MeetingStore,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(make_app(store)) as http:
        yield http


@pytest.fixture(params=["memory", "redis"])
async def ephemeral_handles(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[list[EphemeralStore]]:
    """Two handles on one ephemeral state, as two control-plane processes would hold (in process: the same
    store twice; Redis: two clients)."""
    handles: list[EphemeralStore]
    if request.param == "memory":
        memory = InMemoryEphemeralStore()
        handles = [memory, memory]
    else:
        url = request.getfixturevalue("redis_server")
        handles = [RedisEphemeralStore.from_url(url, prefix=redis_prefix) for _ in range(2)]
    yield handles
    for handle in handles:
        await handle.close()


@pytest.fixture
def ephemeral(ephemeral_handles: list[EphemeralStore]) -> EphemeralStore:
    return ephemeral_handles[0]
