"""Fixtures of the control-plane tests: a configuration in a temporary data directory, every meeting and
account store, both ephemeral stores, real PostgreSQL and Redis servers, a real OpenID Provider, and an HTTP
client talking to the ASGI app in process.

PostgreSQL and Redis are the servers named by `DARKTOWER_TEST_POSTGRES_DSN` / `DARKTOWER_TEST_REDIS_URL`
when set; otherwise a throwaway cluster and redis-server (`darktower.control.devservers`) started on first
use and stopped when the session ends. Each test gets its own PostgreSQL schema and Redis key prefix, so
tests never see each other's data, even on a shared server.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.access_tokens import AccessTokens
from darktower.control.accounts import AccountStore, InMemoryAccountStore
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


FAST_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64}
"""Argon2 parameters that make a hash take microseconds: the tests check behaviour, not hash strength."""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_mapping(
        {"server": {"data_dir": str(tmp_path / "data"), "public_host": "media.example"}, "auth": FAST_HASHING}
    )


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


OIDC_PROVIDER_DIR = Path(__file__).parent / "oidc"
OIDC_CLIENT_ID = "darktower-test"
OIDC_REDIRECT_URI = "http://control.test/v1/auth/oidc/callback"
OIDC_ACCOUNTS = {
    "alice": {"email": "Alice@Example.test", "email_verified": True, "name": "Alice Liddell"},
    "mallory": {"email": "ada@example.test", "email_verified": False, "name": "Mallory\u0007"},
}
"""The provider's accounts (`login_hint` picks one; alice by default)."""
_PROVIDER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class OidcProvider:
    issuer: str
    client_secret: str

    def settings(self) -> dict[str, str]:
        """The `[oidc]` section that makes the app sign in through this provider."""
        return {
            "issuer": self.issuer,
            "client_id": OIDC_CLIENT_ID,
            "client_secret": self.client_secret,
            "redirect_uri": OIDC_REDIRECT_URI,
        }


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A real OpenID Provider (npm `oidc-provider`, tests/control/oidc) on a free port, with one client
    (`OIDC_CLIENT_ID`, redirecting to `OIDC_REDIRECT_URI`) and `OIDC_ACCOUNTS`; sign-ins complete without
    a person. Its npm packages are installed (`npm ci`) when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node is not None, "the OIDC tests need Node.js (node) to run the OpenID Provider"
    assert npm is not None, "the OIDC tests need npm to install the OpenID Provider"
    if not (OIDC_PROVIDER_DIR / "node_modules").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_PROVIDER_DIR, check=True, capture_output=True
        )
    secret = secrets.token_urlsafe(24)
    settings = {
        "client_id": OIDC_CLIENT_ID,
        "client_secret": secret,
        "redirect_uri": OIDC_REDIRECT_URI,
        "accounts": OIDC_ACCOUNTS,
    }
    log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [node, "provider.mjs", json.dumps(settings)],
            cwd=OIDC_PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _PROVIDER_START_TIMEOUT_S)
        line = process.stdout.readline() if ready else b""
        assert line, f"the OpenID Provider did not start: {log_path.read_text(errors='replace')}"
        yield OidcProvider(issuer=json.loads(line)["issuer"], client_secret=secret)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


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


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def accounts(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[AccountStore]:
    """Every account store; the durable ones live in the database of their meeting store."""
    if request.param == "memory":
        yield InMemoryAccountStore()
        return
    async with contextlib.AsyncExitStack() as stack:
        durable: SqliteMeetingStore | PostgresMeetingStore
        if request.param == "sqlite":
            durable = await SqliteMeetingStore.open(database_path(config.server.data_dir))
        else:
            dsn = await stack.enter_async_context(scratch_schema(request.getfixturevalue("postgres_server")))
            durable = await PostgresMeetingStore.open(dsn)
        yield durable.accounts
        await durable.close()


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
        accounts: AccountStore | None = None,
        ephemeral: EphemeralStore | None = None,
        access_tokens: AccessTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> FastAPI:
        return create_app(
            config=app_config or config,
            signer=signer,
            store=store,
            certificate_hashes=certificate_hashes or (lambda: list(HASHES)),
            quic_port=QUIC_PORT,
            accounts=accounts if accounts is not None else accounts_of(store),
            ephemeral=ephemeral,
            access_tokens=access_tokens,
            clock=clock,
        )

    return make


@pytest.fixture
def store_accounts(store: MeetingStore) -> AccountStore:
    """The accounts kept with `store` (beside the in-memory meeting store: a fresh in-memory one)."""
    return accounts_of(store) or InMemoryAccountStore()


def accounts_of(store: MeetingStore) -> AccountStore | None:
    """The account store kept in the database of a durable meeting store; None for the in-memory one."""
    return store.accounts if isinstance(store, SqliteMeetingStore | PostgresMeetingStore) else None


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
