"""The API's observable surface: `/metrics` in the Prometheus text format (requests by route template,
joins, logins, refusals, store errors, worker gauges from the heartbeat table), the admin view of live
meetings and who may see it, the served OpenAPI document, and the JSON error shape on the paths FastAPI and
Starlette answer themselves (404, 405, 422 of path parameters, 500)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message

from darktower.control.access_tokens import AccessTokens
from darktower.control.accounts import InMemoryAccountStore
from darktower.control.admin_api import LIVE_MEETINGS_PATH, LiveMeeting, LiveSnapshot
from darktower.control.app import create_app
from darktower.control.metrics import ControlMetrics, heartbeat_reader
from darktower.control.store import InMemoryMeetingStore, Meeting, MeetingStore, StoreUnavailableError
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenSigner
from darktower.workers.heartbeat import HeartbeatTable, WorkerState

PASSWORD = "correct horse battery"


def build(config: Config, signer: TokenSigner, store: MeetingStore, **extra: Any) -> FastAPI:
    return create_app(
        config=config, signer=signer, store=store, certificate_hashes=list, quic_port=4433, **extra
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]


class FailingStore(InMemoryMeetingStore):
    """Meetings whose lookup fails: with a bug (`boom`) or an unreachable server (`down`)."""

    async def get(self, meeting_id: str) -> Meeting | None:
        if meeting_id == "boom":
            raise RuntimeError("a bug")
        if meeting_id == "down":
            raise StoreUnavailableError("PostgreSQL is unavailable: connection refused")
        return await super().get(meeting_id)


async def test_metrics_count_requests_by_route_joins_logins_and_store_errors(
    config: Config, signer: TokenSigner, connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    app = build(config, signer, FailingStore(), metrics=ControlMetrics())
    async with connect(app) as client:
        assert (await client.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201
        for _ in range(3):
            assert (
                await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
            ).status_code == 200
        assert (await client.get("/v1/meetings/nope")).status_code == 404
        assert (await client.get("/v1/meetings/down")).status_code == 503
        assert (await client.get("/v1/no/such/path")).status_code == 404
        account = {"email": "ada@example.test", "password": PASSWORD}
        assert (await client.post("/v1/users", json=account)).status_code == 201
        assert (await client.post("/v1/auth/login", json=account)).status_code == 200
        wrong = {"email": "ada@example.test", "password": "not the password"}
        assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    page = samples(response.text)
    join_route = "/v1/meetings/{meeting_id}/join"
    assert value(page, "darktower_http_requests_total", method="POST", route=join_route, status="200") == 3
    assert value(page, "darktower_joins_total") == 3
    get_route = "/v1/meetings/{meeting_id}"
    assert value(page, "darktower_http_requests_total", method="GET", route=get_route, status="404") == 1
    assert not [key for key in page if "/v1/no/such/path" in str(key)], "raw paths must not become labels"
    count = value(page, "darktower_http_request_duration_seconds_count", method="POST", route=join_route)
    assert count == 3
    assert value(page, "darktower_logins_total", outcome="success") == 1
    assert value(page, "darktower_logins_total", outcome="invalid_credentials") == 1
    assert value(page, "darktower_api_errors_total", code="meeting_not_found") == 1
    assert value(page, "darktower_store_errors_total") == 1
    assert not [key for key in page if key[0].startswith("darktower_worker_")]


@pytest.fixture
def heartbeat_table() -> Iterator[HeartbeatTable]:
    name = f"/darktower-test-{os.getpid()}-{time.monotonic_ns()}"
    table = HeartbeatTable.create(
        name, 2, supervisor_pid=os.getpid(), now_ns=time.monotonic_ns(), heartbeat_timeout_ns=3_000_000_000
    )
    yield table
    table.close()
    HeartbeatTable.unlink(name)


def test_worker_gauges_come_from_the_heartbeat_table(heartbeat_table: HeartbeatTable) -> None:
    heartbeat_table.worker_spawned(1, pid=4242, now_ns=time.monotonic_ns(), restarts=2)
    heartbeat_table.set_state(1, WorkerState.RUNNING)
    heartbeat_table.beat(1, time.monotonic_ns(), connections=7, meetings=3, ring_lag=5)
    page = samples(ControlMetrics(heartbeat_reader(heartbeat_table.name)).render().decode())
    assert value(page, "darktower_worker_connections", worker="1") == 7
    assert value(page, "darktower_worker_meetings", worker="1") == 3
    assert value(page, "darktower_worker_restarts", worker="1") == 2
    assert value(page, "darktower_worker_ring_lag", worker="1") == 5
    assert value(page, "darktower_worker_state", worker="1") == WorkerState.RUNNING
    assert value(page, "darktower_worker_state", worker="0") == WorkerState.EMPTY
    assert 0 <= value(page, "darktower_worker_heartbeat_age_seconds", worker="1") < 60
    assert ("darktower_worker_heartbeat_age_seconds", frozenset({("worker", "0")})) not in page


def test_worker_gauges_are_absent_without_a_server() -> None:
    page = samples(ControlMetrics(heartbeat_reader("/darktower-test-no-such-table")).render().decode())
    assert not [key for key in page if key[0].startswith("darktower_worker_")]


async def test_framework_answered_errors_have_the_json_shape(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    app = make_app(FailingStore())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://control.test") as client:
        assert_error(await client.get("/v1/nothing-here"), 404, "not_found")
        assert_error(await client.delete("/v1/meetings"), 405, "method_not_allowed")
        assert_error(await client.put("/healthz"), 405, "method_not_allowed")
        assert_error(await client.get("/v1/meetings/boom"), 500, "internal_error")
        assert "a bug" not in (await client.get("/v1/meetings/boom")).text
        assert_error(await client.get("/v1/meetings/down"), 503, "store_unavailable")
        page = samples((await client.get("/metrics")).text)
    route = "/v1/meetings/{meeting_id}"
    assert value(page, "darktower_http_requests_total", method="GET", route=route, status="500") == 2
    assert value(page, "darktower_api_errors_total", code="internal_error") == 2


async def test_openapi_documents_bodies_and_the_error_shape(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    async with connect(make_app(InMemoryMeetingStore())) as client:
        document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    join = paths["/v1/meetings/{meeting_id}/join"]["post"]
    assert join["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JoinRequest")
    assert join["requestBody"]["required"] is True
    assert paths["/v1/meetings"]["post"]["requestBody"]["required"] is False
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    for operations in paths.values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            schema = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert schema["$ref"] == "#/components/schemas/ErrorResponse"
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert LIVE_MEETINGS_PATH in paths


class FixedLiveMeetings:
    """A LiveMeetingsSource with a fixed answer (the interface the worker admin channel implements)."""

    async def live_meetings(self) -> LiveSnapshot:
        return LiveSnapshot(
            meetings=[
                LiveMeeting(meeting_id="zeta", worker=1, participants=4, locked=True),
                LiveMeeting(meeting_id="alpha", worker=0, participants=2),
            ],
            unreachable_workers=[3],
        )


async def test_live_meetings_are_shown_to_admins_only(
    config: Config, signer: TokenSigner, connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    settings = config.to_dict()
    settings["auth"]["admins"] = ["Root@Example.test"]
    admin_config = from_mapping(settings)
    app = build(admin_config, signer, InMemoryMeetingStore(), live_meetings=FixedLiveMeetings())
    async with connect(app) as client:
        tokens = {}
        for email in ("root@example.test", "ada@example.test"):
            account = {"email": email, "password": PASSWORD}
            assert (await client.post("/v1/users", json=account)).status_code == 201
            tokens[email] = (await client.post("/v1/auth/login", json=account)).json()["access_token"]

        assert_error(await client.get(LIVE_MEETINGS_PATH), 401, "unauthenticated")
        bad = {"Authorization": "Bearer not-a-token"}
        assert_error(await client.get(LIVE_MEETINGS_PATH, headers=bad), 401, "invalid_token")
        ada = {"Authorization": f"Bearer {tokens['ada@example.test']}"}
        assert_error(await client.get(LIVE_MEETINGS_PATH, headers=ada), 403, "not_admin")
        root = {"Authorization": f"Bearer {tokens['root@example.test']}"}
        response = await client.get(LIVE_MEETINGS_PATH, headers=root)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "meetings": [
            {"meeting_id": "alpha", "worker": 0, "participants": 2, "locked": False},
            {"meeting_id": "zeta", "worker": 1, "participants": 4, "locked": True},
        ],
        "unreachable_workers": [3],
    }


async def test_admins_are_named_by_user_id_too_and_by_default_see_this_nodes_workers(
    config: Config, make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    accounts = InMemoryAccountStore()
    access_tokens = AccessTokens(ec.generate_private_key(ec.SECP256R1()), "darktower", 900)
    shared = {"accounts": accounts, "access_tokens": access_tokens}
    async with connect(make_app(InMemoryMeetingStore(), **shared)) as client:
        account = {"email": "root@example.test", "password": PASSWORD}
        user = (await client.post("/v1/users", json=account)).json()
        token = (await client.post("/v1/auth/login", json=account)).json()["access_token"]
    settings = config.to_dict()
    settings["auth"]["admins"] = [user["user_id"]]
    app = make_app(InMemoryMeetingStore(), app_config=from_mapping(settings), **shared)
    async with connect(app) as client:
        response = await client.get(LIVE_MEETINGS_PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"meetings": [], "unreachable_workers": [0]}, "no worker runs in this test"


async def test_a_client_gone_while_its_body_is_read_is_no_server_error(
    config: Config, signer: TokenSigner
) -> None:
    app = build(config, signer, InMemoryMeetingStore())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/auth/login",
        "raw_path": b"/v1/auth/login",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"50")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b'"client_disconnected"' in sent[1]["body"]
