"""Accounts through the control-plane process as `darktower serve` runs it, on PostgreSQL and Redis: the
accounts land in PostgreSQL, the rate-limit buckets in Redis, and access tokens are signed with the key in
the data directory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from darktower.control.access_tokens import AccessTokens
from darktower.control.ephemeral import RateLimit
from darktower.control.main import run_control
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.core.config import from_mapping
from darktower.core.tokens import load_or_create_signing_key, signing_key_path


async def test_sign_in_through_the_served_control_plane_on_postgres_and_redis(
    tmp_path: Path, postgres_dsn: str, redis_server: str, redis_prefix: str
) -> None:
    config = from_mapping(
        {
            "server": {"data_dir": str(tmp_path / "data"), "http_port": 0},
            "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
            "store": {
                "durable": "postgres",
                "postgres_dsn": postgres_dsn,
                "ephemeral": "redis",
                "redis_url": redis_server,
                "redis_key_prefix": redis_prefix,
            },
        }
    )
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_control(config, 4999, on_ready=ready.set_result, stop=stop))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            account = {"email": "ada@example.test", "password": "correct horse battery"}
            user = (await http.post("/v1/users", json=account)).json()
            pair = (await http.post("/v1/auth/login", json=account)).json()
            refreshed = await http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            assert refreshed.status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    key = load_or_create_signing_key(signing_key_path(config.server.data_dir, ""))
    claims = AccessTokens(key, config.auth.issuer, 900).verify(pair["access_token"], now=time.time())
    assert claims.user_id == user["user_id"]

    store = await PostgresMeetingStore.open(postgres_dsn)
    try:
        assert await store.accounts.user_by_id(user["user_id"]) is not None
        assert len(await store.accounts.audit_log()) == 3
    finally:
        await store.close()

    redis = RedisEphemeralStore.from_url(redis_server, prefix=redis_prefix)
    try:
        limits = config.rate_limits
        bucket = RateLimit(limits.login_burst, limits.login_per_minute / 60)
        decision = await redis.take_tokens("rl:login:ip:127.0.0.1", bucket)
    finally:
        await redis.close()
    assert decision.remaining < limits.login_burst - 2
