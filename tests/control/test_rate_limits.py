"""Rate limits on sign-in and join: 429 `rate_limited` with Retry-After, buckets shared by every process on
one ephemeral store, per address and per account, and the policy while the store is unreachable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from darktower.control.accounts import InMemoryAccountStore
from darktower.control.devservers import free_port
from darktower.control.ephemeral import EphemeralStore
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.store import InMemoryMeetingStore
from darktower.core.config import Config, from_mapping

PASSWORD = "correct horse battery"


def limited(config: Config, **limits: Any) -> Config:
    settings = config.to_dict()
    return from_mapping({**settings, "rate_limits": {**settings["rate_limits"], **limits}})


def client_from(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://control.test")


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_sign_ins_from_one_address_share_a_bucket_across_processes(
    config: Config, make_app: Callable[..., FastAPI], ephemeral_handles: list[EphemeralStore]
) -> None:
    app_config = limited(config, login_burst=3, login_per_minute=1.0)
    accounts, meetings = InMemoryAccountStore(), InMemoryMeetingStore()
    apps = [
        make_app(meetings, app_config=app_config, accounts=accounts, ephemeral=e) for e in ephemeral_handles
    ]
    async with client_from(apps[0], "192.0.2.1") as first, client_from(apps[1], "192.0.2.1") as second:
        registered = await first.post("/v1/users", json={"email": "ada@example.test", "password": PASSWORD})
        assert registered.status_code == 201
        body = {"email": "ada@example.test", "password": PASSWORD}
        assert (await second.post("/v1/auth/login", json=body)).status_code == 200
        assert (await first.post("/v1/auth/login", json={**body, "password": "wrong"})).status_code == 401
        assert_rate_limited(await second.post("/v1/auth/login", json=body))
        assert_rate_limited(
            await first.post("/v1/users", json={"email": "b@example.test", "password": PASSWORD})
        )
    async with client_from(apps[1], "192.0.2.2") as elsewhere:
        assert (await elsewhere.post("/v1/auth/login", json=body)).status_code == 200


async def test_sign_ins_to_one_account_are_limited_whatever_the_address(
    config: Config, make_app: Callable[..., FastAPI]
) -> None:
    app = make_app(InMemoryMeetingStore(), app_config=limited(config, account_login_burst=2))
    body = {"email": "ada@example.test", "password": PASSWORD}
    async with client_from(app, "192.0.2.1") as first, client_from(app, "192.0.2.2") as second:
        assert (await first.post("/v1/users", json=body)).status_code == 201
        assert (await first.post("/v1/auth/login", json=body)).status_code == 200
        assert (await second.post("/v1/auth/login", json={**body, "password": "guess"})).status_code == 401
        assert_rate_limited(await second.post("/v1/auth/login", json=body))
        other = await second.post(
            "/v1/auth/login", json={"email": "grace@example.test", "password": PASSWORD}
        )
        assert other.status_code == 401


async def test_joins_from_one_address_are_limited(config: Config, make_app: Callable[..., FastAPI]) -> None:
    app = make_app(InMemoryMeetingStore(), app_config=limited(config, join_burst=2, join_per_minute=2.0))
    join = {"display_name": "Ada"}
    async with client_from(app, "192.0.2.1") as first, client_from(app, "192.0.2.2") as second:
        assert (await first.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201
        for _ in range(2):
            assert (await first.post("/v1/meetings/m1/join", json=join)).status_code == 200
        response = await first.post("/v1/meetings/m1/join", json=join)
        assert_rate_limited(response)
        assert int(response.headers["retry-after"]) == 30
        assert (await second.post("/v1/meetings/m1/join", json=join)).status_code == 200


@pytest.mark.parametrize(("policy", "status"), [("allow", 200), ("refuse", 503)])
async def test_an_unreachable_limiter_store_follows_the_configured_policy(
    config: Config, make_app: Callable[..., FastAPI], policy: str, status: int
) -> None:
    down = RedisEphemeralStore.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="t:", timeout_s=2)
    app = make_app(
        InMemoryMeetingStore(), app_config=limited(config, when_unavailable=policy), ephemeral=down
    )
    try:
        async with client_from(app, "192.0.2.1") as client:
            await client.post("/v1/meetings", json={"meeting_id": "m1"})
            response = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
    finally:
        await down.close()
    assert response.status_code == status, response.text
    if status == 503:
        assert response.json()["error"]["code"] == "rate_limiter_unavailable"
