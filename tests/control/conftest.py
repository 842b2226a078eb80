"""Fixtures of the control-plane tests: a configuration in a temporary data directory, both meeting stores,
and an HTTP client talking to the ASGI app in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.app import create_app
from darktower.control.sqlite_store import SqliteMeetingStore, database_path
from darktower.control.store import InMemoryMeetingStore, MeetingStore
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenSigner, TokenVerifier

QUIC_PORT = 4999
HASHES = [bytes(range(32)), bytes(32)]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_mapping({"server": {"data_dir": str(tmp_path / "data"), "public_host": "media.example"}})


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[MeetingStore]:
    opened: MeetingStore
    if request.param == "memory":
        opened = InMemoryMeetingStore()
    else:
        opened = await SqliteMeetingStore.open(database_path(config.server.data_dir))
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
