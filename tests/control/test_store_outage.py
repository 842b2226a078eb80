"""Stores going down under a running control plane, on real servers of each test's own (not the shared ones
the other tests use), stopped and started again:

- PostgreSQL down: every request that needs it answers 503 `store_unavailable` with a message that says
  so, never a 500, except a meeting read before the outage, which is served from the cache (marked
  stale); once the server is back the same app serves again by itself and everything it accepted is there.
- Redis down: the node keeps serving, rate limits follow `rate_limits.when_unavailable` (allow: unlimited;
  refuse: 503 `rate_limiter_unavailable`), and once Redis is back the limits apply again by themselves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.devservers import restartable_postgres, restartable_redis, throwaway_postgres
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.read_cache import STALE_HEADER
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.store import InMemoryMeetingStore
from darktower.core.config import Config, from_mapping

PASSWORD = "correct horse battery"


async def test_with_postgres_down_requests_answer_503_store_unavailable(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    server = contextlib.ExitStack()
    dsn = server.enter_context(throwaway_postgres())
    store = await PostgresMeetingStore.open(dsn, connect_timeout_s=2)
    try:
        async with connect(make_app(store)) as client:
            assert (await client.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201
            account = {"email": "ada@example.test", "password": PASSWORD}
            assert (await client.post("/v1/users", json=account)).status_code == 201
            pair = (await client.post("/v1/auth/login", json=account)).json()

            server.close()  # stops the server (immediate shutdown) and deletes its data

            bearer = {"Authorization": f"Bearer {pair['access_token']}"}
            requests = [
                ("POST", "/v1/meetings", {"meeting_id": "m2"}, {}),
                ("POST", "/v1/meetings", {"meeting_id": "m3"}, bearer),
                ("POST", "/v1/users", {"email": "grace@example.test", "password": PASSWORD}, {}),
                ("POST", "/v1/auth/login", account, {}),
                ("POST", "/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}, {}),
                ("POST", "/v1/auth/logout", {"refresh_token": pair["refresh_token"]}, {}),
                ("POST", "/v1/meetings/m1/join", {"display_name": "Ada"}, {}),
                ("GET", "/v1/meetings/m1", None, {}),
                ("GET", "/v1/users/me", None, bearer),
            ]
            for method, path, body, headers in requests:
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 503, (path, response.text)
                error = response.json()["error"]
                assert error["code"] == "store_unavailable", path
                assert error["message"].startswith("PostgreSQL is unavailable"), error["message"]
                assert error["message"].endswith("try again shortly")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        server.close()
        await store.close()


async def until_ok(request: Callable[[], Awaitable[httpx.Response]], status: int) -> httpx.Response:
    """The first answer with `status` within DEADLINE_S: a pool drops the connections a restart broke as it
    meets them, one failed request each at most."""
    async with asyncio.timeout(DEADLINE_S):
        for _ in range(MAX_TRIES):
            response = await request()
            if response.status_code == status:
                return response
    raise AssertionError(f"still {response.status_code} after {MAX_TRIES} tries: {response.text}")


DEADLINE_S = 30.0
MAX_TRIES = 20


async def test_postgres_down_serves_cached_reads_refuses_writes_and_recovers_losing_nothing(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    with restartable_postgres(crash_safe=True) as server:
        store = await PostgresMeetingStore.open(server.url, connect_timeout_s=2)
        try:
            async with connect(make_app(store)) as client:
                for meeting_id in ("m1", "m2"):
                    created = await client.post(
                        "/v1/meetings", json={"meeting_id": meeting_id, "title": "Kept"}
                    )
                    assert created.status_code == 201
                read = await client.get("/v1/meetings/m1")
                assert read.status_code == 200
                assert STALE_HEADER[0].decode() not in read.headers
                account = {"email": "ada@example.test", "password": PASSWORD}
                assert (await client.post("/v1/users", json=account)).status_code == 201

                server.stop()

                cached = await client.get("/v1/meetings/m1")
                assert cached.status_code == 200, cached.text
                assert cached.json() == read.json()
                assert cached.headers[STALE_HEADER[0].decode()] == STALE_HEADER[1].decode()
                never_read = await client.get("/v1/meetings/m2")
                assert never_read.status_code == 503
                assert never_read.json()["error"]["code"] == "store_unavailable"
                refused = await client.post("/v1/meetings", json={"meeting_id": "m3"})
                assert refused.status_code == 503
                assert refused.json()["error"]["code"] == "store_unavailable"

                server.start()

                fresh = await until_ok(lambda: client.get("/v1/meetings/m2"), 200)
                assert fresh.json()["title"] == "Kept"
                assert STALE_HEADER[0].decode() not in fresh.headers
                assert (await until_ok(lambda: client.post("/v1/auth/login", json=account), 200)).json()
                assert (await client.get("/v1/meetings/m3")).status_code == 404, (
                    "a refused write left nothing"
                )
                created = await until_ok(lambda: client.post("/v1/meetings", json={"meeting_id": "m3"}), 201)
                assert created.json()["meeting_id"] == "m3"
        finally:
            await store.close()


def limited(config: Config, policy: str) -> Config:
    settings = config.to_dict()
    settings["rate_limits"] = {"join_burst": 2, "join_per_minute": 1, "when_unavailable": policy}
    return from_mapping(settings)


@pytest.mark.parametrize("policy", ["allow", "refuse"])
async def test_redis_down_follows_the_rate_limit_policy_and_limits_apply_again_when_it_is_back(
    config: Config,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
    redis_prefix: str,
    policy: str,
) -> None:
    with restartable_redis() as server:
        ephemeral = RedisEphemeralStore.from_url(server.url, prefix=redis_prefix, timeout_s=2)
        app = make_app(InMemoryMeetingStore(), app_config=limited(config, policy), ephemeral=ephemeral)
        try:
            async with connect(app) as client:
                assert (await client.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201

                async def join() -> httpx.Response:
                    return await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})

                assert [(await join()).status_code for _ in range(3)] == [200, 200, 429]

                server.stop()

                answers = [await join() for _ in range(3)]
                if policy == "allow":
                    assert [a.status_code for a in answers] == [200, 200, 200], (
                        "unlimited while Redis is down"
                    )
                else:
                    assert {a.status_code for a in answers} == {503}
                    assert {a.json()["error"]["code"] for a in answers} == {"rate_limiter_unavailable"}
                assert (await client.get("/v1/meetings/m1")).status_code == 200, "the node keeps serving"

                server.start()  # an empty Redis: the bucket starts full again

                assert (await until_ok(join, 200)).status_code == 200
                statuses = [(await join()).status_code for _ in range(2)]
                assert statuses == [200, 429], "the limits apply again"
        finally:
            await ephemeral.close()
