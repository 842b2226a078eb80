"""PostgreSQL going down under a running control plane: every request that needs it answers 503
`store_unavailable` with a message that says so, never a 500. The test stops a PostgreSQL server of its own
(not the shared one the other tests use)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from darktower.control.devservers import throwaway_postgres
from darktower.control.postgres_store import PostgresMeetingStore

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
