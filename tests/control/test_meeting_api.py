"""The meeting routes end to end in process: accounts, roles in join grants, schedule, guests, lobby, host
actions reaching a worker core through its real admin socket, history, recordings and the audit log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.accounts import AccountStore, AuditAction, AuditOutcome, InMemoryAccountStore
from darktower.control.app import create_app
from darktower.control.devservers import throwaway_postgres
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.sqlite_store import SqliteMeetingStore
from darktower.control.store import InMemoryMeetingStore, MeetingStore
from darktower.control.worker_admin import WorkerAdmin
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import JoinGrant, Role, TokenSigner, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.actions import Action, CloseSession, SendSignaling
from darktower.workers.admin import AdminChannel
from darktower.workers.admin_state import Oversight
from darktower.workers.core import WorkerCore

PASSWORD = "correct horse battery"
QUIC_PORT = 4999
HASHES = [bytes(range(32))]
FAST_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64}


def accounts_of(store: MeetingStore) -> AccountStore | None:
    return store.accounts if isinstance(store, SqliteMeetingStore | PostgresMeetingStore) else None


class CoreTarget:
    """A worker core behind a real admin channel: what the channel asks is done to the core, and what the
    core sends is decoded per session."""

    def __init__(self, core: WorkerCore) -> None:
        self.core = core
        self.closed: dict[int, str] = {}
        self.inbox: dict[int, list[pb.ServerMessage]] = {}
        self._readers: dict[int, DelimitedReader] = {}

    @property
    def oversight(self) -> Oversight:
        return self.core.oversight

    def run_host_action(self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str) -> None:
        self.run(self.core.host_action(meeting_id, kind, participant_id, time.time_ns() // 1000))

    def live_meetings(self) -> list[dict[str, Any]]:
        return self.core.snapshot()

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendSignaling):
                reader = self._readers.setdefault(action.session, DelimitedReader(1 << 20))
                self.inbox.setdefault(action.session, []).extend(
                    parse_server_message(body) for body in reader.feed(action.data)
                )
            elif isinstance(action, CloseSession):
                self.closed[action.session] = pb.ErrorCode.Name(action.code)

    def enter(self, session: int, meeting_id: str, token: str) -> pb.ServerMessage:
        """The session opens and joins with `token`; its reply."""
        now = time.time_ns() // 1000
        self.run(self.core.session_opened(session, meeting_id, now))
        join = pb.ClientMessage(request_id=1, join=pb.Join(token=token))
        self.run(self.core.signaling_received(session, encode_delimited(join), now))
        return next(m for m in self.inbox[session] if m.request_id == 1)

    def bodies(self, session: int) -> list[str]:
        return [str(m.WhichOneof("body")) for m in self.inbox.get(session, [])]


@dataclass
class Env:
    http: httpx.AsyncClient
    worker: CoreTarget
    verifier: TokenVerifier
    store: MeetingStore
    accounts: AccountStore
    now: list[float] = field(default_factory=lambda: [time.time()])

    async def account(self, email: str) -> tuple[str, dict[str, str]]:
        """A new account's user id and its Authorization header."""
        created = await self.http.post("/v1/users", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = await self.http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return created.json()["user_id"], {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def create(self, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/v1/meetings", json=body, headers=headers or {})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def join(
        self, meeting_id: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/meetings/{meeting_id}/join", json={"display_name": "Ada", **body}, headers=headers or {}
        )

    def grant(self, response: httpx.Response) -> JoinGrant:
        assert response.status_code == 200, response.text
        body = response.json()
        return self.verifier.verify(body["token"], meeting_id=body["meeting_id"], now=time.time())


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def short_config(tmp_path: Path) -> Config:
    """A data dir short enough for unix socket paths."""
    return from_mapping(
        {"server": {"data_dir": str(tmp_path / "d"), "public_host": "media.example"}, "auth": FAST_HASHING}
    )


async def make_env(
    config: Config, signer: TokenSigner, verifier: TokenVerifier, store: MeetingStore
) -> AsyncIterator[Env]:
    target = CoreTarget(WorkerCore(verifier=verifier, limits=config.limits))
    channel = await AdminChannel.start(config.server.data_dir, 0, target)
    env_now = [time.time()]
    accounts = accounts_of(store) or InMemoryAccountStore()
    app: FastAPI = create_app(
        config=config,
        signer=signer,
        store=store,
        certificate_hashes=lambda: list(HASHES),
        quic_port=QUIC_PORT,
        accounts=accounts,
        clock=lambda: env_now[0],
        workers=WorkerAdmin(config.server.data_dir, 1, timeout_s=1.0),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://control.test") as http:
        yield Env(http, target, verifier, store, accounts, env_now)
    await channel.close()


@pytest.fixture
async def env(short_config: Config, signer: TokenSigner, verifier: TokenVerifier) -> AsyncIterator[Env]:
    async for made in make_env(short_config, signer, verifier, InMemoryMeetingStore()):
        yield made


@pytest.fixture
async def durable_env(
    short_config: Config, signer: TokenSigner, verifier: TokenVerifier, store: MeetingStore
) -> AsyncIterator[Env]:
    async for made in make_env(short_config, signer, verifier, store):
        yield made


# --- create, read, update, list ------------------------------------------------------------------------


async def test_a_meeting_keeps_its_settings_schedule_and_hosts(env: Env) -> None:
    owner, headers = await env.account("owner@example.test")
    start = "2031-02-03T04:05:06+02:00"
    created = await env.create(
        headers,
        meeting_id="board",
        title="Board",
        scheduled_start=start,
        settings={"max_participants": 5, "e2ee_required": True, "lobby": True, "recording_allowed": True},
        host_user_ids=["cohost", "cohost"],
    )
    assert created["created_by"] == owner
    assert created["settings"] == {
        "max_participants": 5,
        "e2ee_required": True,
        "guests_allowed": True,
        "lobby": True,
        "recording_allowed": True,
    }
    assert datetime.fromisoformat(created["scheduled_start"]) == datetime.fromisoformat(start)
    assert created["host_user_ids"] == ["cohost"]
    assert created["ended_at"] is None
    assert (await env.http.get("/v1/meetings/board")).json() == created


async def test_bad_bodies_name_the_field(env: Env) -> None:
    cases = {
        '{"settings": {"max_participants": -1}}': "settings.max_participants",
        '{"scheduled_start": "2031-02-03T04:05:06"}': "scheduled_start",
        '{"settings": {"lobby": "yes"}}': "settings.lobby",
        '{"host_user_ids": ["not an id"]}': "host_user_ids.0",
        '{"settings": {"recordings": true}}': "settings.recordings: unknown field",
    }
    for body, field_name in cases.items():
        response = await env.http.post(
            "/v1/meetings", content=body, headers={"content-type": "application/json"}
        )
        assert error(response) == (422, "invalid_request"), body
        assert field_name in response.json()["error"]["message"], (body, response.json())


async def test_only_hosts_update_and_fields_left_out_keep_their_value(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    cohost_id, cohost = await env.account("cohost@example.test")
    stranger_id, stranger = await env.account("stranger@example.test")
    await env.create(owner, meeting_id="m", title="Old", scheduled_start="2031-01-01T00:00:00Z")
    url = "/v1/meetings/m"
    assert error(await env.http.patch(url, json={"title": "x"})) == (401, "unauthenticated")
    assert error(await env.http.patch(url, json={"title": "x"}, headers=stranger)) == (403, "not_host")
    assert error(await env.http.patch(url, json={"title": "x"}, headers=cohost)) == (403, "not_host")
    refused = [e for e in await env.accounts.audit_log() if e.action is AuditAction.MEETING_UPDATE]
    assert [(e.outcome, e.user_id, e.detail) for e in refused] == [
        (AuditOutcome.FAILURE, stranger_id, "m: not a host"),
        (AuditOutcome.FAILURE, cohost_id, "m: not a host"),
    ]

    changed = await env.http.patch(url, json={"host_user_ids": [cohost_id]}, headers=owner)
    assert changed.status_code == 200
    changed = await env.http.patch(
        url, json={"settings": {"guests_allowed": False}, "scheduled_start": None}, headers=cohost
    )
    body = changed.json()
    assert (body["title"], body["scheduled_start"], body["settings"]["guests_allowed"]) == (
        "Old",
        None,
        False,
    )
    assert body["settings"]["lobby"] is False
    assert (await env.http.get(url)).json() == body
    assert error(await env.http.patch(url, content=b"", headers=owner)) == (422, "invalid_request")
    assert error(await env.http.patch("/v1/meetings/none", json={}, headers=owner)) == (
        404,
        "meeting_not_found",
    )


async def test_listing_needs_an_account_and_pages_through_its_meetings(env: Env) -> None:
    owner_id, owner = await env.account("owner@example.test")
    _, other = await env.account("other@example.test")
    for n in range(5):
        env.now[0] += 1
        await env.create(owner, meeting_id=f"m{n}")
    env.now[0] += 1
    await env.create(other, meeting_id="hosted", host_user_ids=[owner_id])
    await env.create(other, meeting_id="not-mine")
    assert error(await env.http.get("/v1/meetings")) == (401, "unauthenticated")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await env.http.get("/v1/meetings", params=params, headers=owner)).json()
        seen += [m["meeting_id"] for m in page["meetings"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["hosted", "m4", "m3", "m2", "m1", "m0"]
    for params in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"cursor": "garbage!"},
        {"cursor": "W10"},
    ):
        response = await env.http.get("/v1/meetings", params=params, headers=owner)
        assert error(response) == (422, "invalid_request"), params


# --- joins ---------------------------------------------------------------------------------------------


async def test_roles_limits_and_e2ee_go_into_the_grant(env: Env) -> None:
    owner_id, owner = await env.account("owner@example.test")
    cohost_id, cohost = await env.account("cohost@example.test")
    await env.create(
        owner,
        meeting_id="m",
        host_user_ids=[cohost_id],
        settings={"max_participants": 7, "e2ee_required": True},
    )
    host = env.grant(await env.join("m", owner))
    assert (host.role, host.e2ee_required, host.max_participants) == (Role.HOST, True, 7)
    assert env.grant(await env.join("m", cohost)).role is Role.HOST
    guest = await env.join("m")
    assert (guest.json()["role"], guest.json()["e2ee_required"]) == ("participant", True)
    assert env.grant(guest).role is Role.PARTICIPANT
    viewer = env.grant(await env.join("m", viewer=True, publish=True))
    assert (viewer.role, viewer.can_publish, viewer.can_subscribe) == (Role.VIEWER, False, True)
    del owner_id


async def test_guests_are_refused_where_not_allowed(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    _, member = await env.account("member@example.test")
    await env.create(owner, meeting_id="m", settings={"guests_allowed": False})
    refused = await env.join("m")
    assert error(refused) == (403, "guests_not_allowed")
    assert "sign in" in refused.json()["error"]["message"]
    assert env.grant(await env.join("m", member)).role is Role.PARTICIPANT


async def test_joins_open_ten_minutes_before_the_scheduled_start_except_for_hosts(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    start = datetime.fromtimestamp(env.now[0], UTC) + timedelta(hours=1)
    await env.create(owner, meeting_id="m", scheduled_start=start.isoformat())
    early = await env.join("m")
    assert error(early) == (403, "meeting_not_started")
    assert early.json()["error"]["message"] == (
        f"meeting 'm' starts at {start.isoformat()}; joins open 10 minutes before"
    )
    assert env.grant(await env.join("m", owner)).role is Role.HOST
    env.now[0] += 50 * 60
    assert env.grant(await env.join("m")).role is Role.PARTICIPANT


async def test_an_ended_meeting_refuses_joins_and_changes(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    await env.create(owner, meeting_id="m")
    ended = await env.http.post("/v1/meetings/m/end", headers=owner)
    assert ended.status_code == 200
    assert ended.json()["ended_at"] is not None
    assert error(await env.join("m")) == (410, "meeting_ended")
    assert error(await env.join("m", owner)) == (410, "meeting_ended")
    assert error(await env.http.patch("/v1/meetings/m", json={"title": "x"}, headers=owner)) == (
        409,
        "meeting_ended",
    )
    again = await env.http.post("/v1/meetings/m/end", headers=owner)
    assert again.json()["ended_at"] == ended.json()["ended_at"]


# --- lobby ---------------------------------------------------------------------------------------------


async def test_the_lobby_holds_participants_until_a_host_decides(durable_env: Env) -> None:
    env = durable_env
    _, owner = await env.account("owner@example.test")
    _, stranger = await env.account("stranger@example.test")
    await env.create(owner, meeting_id="m", settings={"lobby": True})
    assert env.grant(await env.join("m", owner)).role is Role.HOST

    waiting = await env.join("m", display_name="Guest One")
    assert waiting.status_code == 202
    ticket, request_id = waiting.json()["ticket"], waiting.json()["request_id"]
    poll = await env.http.post("/v1/meetings/m/lobby/poll", json={"ticket": ticket})
    assert (poll.status_code, poll.json()["status"]) == (202, "waiting")
    assert error(await env.http.get("/v1/meetings/m/lobby", headers=stranger)) == (403, "not_host")
    listed = (await env.http.get("/v1/meetings/m/lobby", headers=owner)).json()["waiting"]
    assert [(w["request_id"], w["display_name"]) for w in listed] == [(request_id, "Guest One")]

    admitted = await env.http.post(f"/v1/meetings/m/lobby/{request_id}/admit", headers=owner)
    assert admitted.status_code == 200
    grant = env.grant(await env.http.post("/v1/meetings/m/lobby/poll", json={"ticket": ticket}))
    assert (grant.display_name, grant.role) == ("Guest One", Role.PARTICIPANT)
    again = env.grant(await env.http.post("/v1/meetings/m/lobby/poll", json={"ticket": ticket}))
    assert again.participant_id == grant.participant_id
    decided = await env.http.post(f"/v1/meetings/m/lobby/{request_id}/deny", headers=owner)
    assert error(decided) == (409, "lobby_request_decided")

    second = (await env.join("m", display_name="Guest Two")).json()
    await env.http.post(f"/v1/meetings/m/lobby/{second['request_id']}/deny", headers=owner)
    denied = await env.http.post("/v1/meetings/m/lobby/poll", json={"ticket": second["ticket"]})
    assert error(denied) == (403, "lobby_denied")
    unknown = await env.http.post("/v1/meetings/m/lobby/poll", json={"ticket": "nope"})
    assert error(unknown) == (404, "lobby_request_not_found")
    missing = await env.http.post("/v1/meetings/m/lobby/nope/admit", headers=owner)
    assert error(missing) == (404, "lobby_request_not_found")
    assert error(await env.http.post("/v1/meetings/m/lobby/x/maybe", headers=owner)) == (404, "not_found")
    actions = [e.action for e in await env.accounts.audit_log()]
    assert actions.count(AuditAction.LOBBY_ADMIT) == 1
    assert actions.count(AuditAction.LOBBY_DENY) == 1


# --- host actions through the worker ---------------------------------------------------------------------


async def test_rest_host_actions_reach_the_worker(durable_env: Env) -> None:
    env = durable_env
    _, owner = await env.account("owner@example.test")
    await env.create(owner, meeting_id="m")
    host_token = (await env.join("m", owner)).json()["token"]
    bob = (await env.join("m", display_name="Bob")).json()
    carol = (await env.join("m", display_name="Carol")).json()
    assert env.worker.enter(1, "m", host_token).WhichOneof("body") == "join_response"
    env.worker.enter(2, "m", bob["token"])
    env.worker.enter(3, "m", carol["token"])

    base = "/v1/meetings/m/participants"
    assert (await env.http.post(f"{base}/{bob['participant_id']}/mute", headers=owner)).status_code == 200
    assert "muted" in env.worker.bodies(2)
    removed = await env.http.post(f"{base}/{bob['participant_id']}/remove", headers=owner)
    assert removed.json() == {"meeting_id": "m", "action": "remove", "participant_id": bob["participant_id"]}
    assert env.worker.closed == {2: "ERROR_CODE_REMOVED"}
    again = await env.http.post(f"{base}/{bob['participant_id']}/remove", headers=owner)
    assert error(again) == (404, "participant_not_found")
    assert error(await env.http.post(f"{base}/x/kick", headers=owner)) == (404, "not_found")
    assert error(await env.http.post(f"{base}/{carol['participant_id']}/mute")) == (401, "unauthenticated")

    assert (await env.http.post("/v1/meetings/m/lock", headers=owner)).status_code == 200
    late = (await env.join("m", display_name="Late")).json()
    assert env.worker.enter(4, "m", late["token"]).error.code == pb.ERROR_CODE_MEETING_LOCKED
    assert (await env.http.post("/v1/meetings/m/unlock", headers=owner)).status_code == 200

    assert (await env.http.post("/v1/meetings/m/end", headers=owner)).status_code == 200
    assert env.worker.closed == {
        2: "ERROR_CODE_REMOVED",
        4: "ERROR_CODE_MEETING_LOCKED",
        1: "ERROR_CODE_ENDED",
        3: "ERROR_CODE_ENDED",
    }
    assert env.worker.core.snapshot() == []
    actions = [e.action for e in await env.accounts.audit_log()]
    for expected in (
        AuditAction.MEETING_CREATE,
        AuditAction.HOST_MUTE,
        AuditAction.HOST_REMOVE,
        AuditAction.HOST_LOCK,
        AuditAction.HOST_UNLOCK,
        AuditAction.MEETING_END,
    ):
        assert expected in actions


async def test_locking_a_meeting_nobody_is_in_is_refused(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    await env.create(owner, meeting_id="m")
    response = await env.http.post("/v1/meetings/m/lock", headers=owner)
    assert error(response) == (409, "meeting_not_live")


async def test_an_end_is_recorded_even_when_the_worker_cannot_be_reached(
    short_config: Config, signer: TokenSigner, verifier: TokenVerifier
) -> None:
    store = InMemoryMeetingStore()
    app = create_app(
        config=short_config,
        signer=signer,
        store=store,
        certificate_hashes=lambda: list(HASHES),
        quic_port=QUIC_PORT,
        workers=WorkerAdmin(short_config.server.data_dir, 1, timeout_s=0.5),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        await http.post("/v1/users", json={"email": "o@example.test", "password": PASSWORD})
        login = await http.post("/v1/auth/login", json={"email": "o@example.test", "password": PASSWORD})
        owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
        await http.post("/v1/meetings", json={"meeting_id": "m"}, headers=owner)
        response = await http.post("/v1/meetings/m/end", headers=owner)
        assert error(response) == (503, "worker_unavailable")
        assert "worker 0 cannot be reached" in response.json()["error"]["message"]
        assert error(await http.post("/v1/meetings/m/join", json={"display_name": "A"})) == (
            410,
            "meeting_ended",
        )


# --- history and recordings ------------------------------------------------------------------------------


async def test_history_lists_who_joined_and_left_for_hosts_only(durable_env: Env) -> None:
    env = durable_env
    _, owner = await env.account("owner@example.test")
    _, stranger = await env.account("stranger@example.test")
    await env.create(owner, meeting_id="m")
    host = (await env.join("m", owner, display_name="Hana")).json()
    bob = (await env.join("m", display_name="Bob")).json()
    env.worker.enter(1, "m", host["token"])
    env.worker.enter(2, "m", bob["token"])
    env.worker.run(env.worker.core.session_closed(2, time.time_ns() // 1000))

    assert error(await env.http.get("/v1/meetings/m/history", headers=stranger)) == (403, "not_host")
    history = (await env.http.get("/v1/meetings/m/history", headers=owner)).json()
    assert [(e["display_name"], e["role"], e["kind"], e["reason"]) for e in history["events"]] == [
        ("Hana", "host", "joined", ""),
        ("Bob", "participant", "joined", ""),
        ("Bob", "participant", "left", "disconnected"),
    ]
    again = await env.http.get(
        "/v1/meetings/m/history", params={"after": history["next_after"]}, headers=owner
    )
    assert again.json() == {"events": [], "next_after": history["next_after"]}
    bad = await env.http.get("/v1/meetings/m/history", params={"after": "-1"}, headers=owner)
    assert error(bad) == (422, "invalid_request")


async def test_recordings_are_kept_where_allowed(env: Env) -> None:
    _, owner = await env.account("owner@example.test")
    await env.create(owner, meeting_id="no")
    await env.create(owner, meeting_id="yes", settings={"recording_allowed": True})
    body = {"started_at": "2031-01-01T10:00:00Z", "location": "s3://rec/1.webm", "size_bytes": 12}
    refused = await env.http.post("/v1/meetings/no/recordings", json=body, headers=owner)
    assert error(refused) == (409, "recording_not_allowed")
    backwards = {**body, "ended_at": "2031-01-01T09:00:00Z"}
    assert error(await env.http.post("/v1/meetings/yes/recordings", json=backwards, headers=owner)) == (
        422,
        "invalid_request",
    )
    created = await env.http.post("/v1/meetings/yes/recordings", json=body, headers=owner)
    assert created.status_code == 201
    listed = (await env.http.get("/v1/meetings/yes/recordings", headers=owner)).json()["recordings"]
    assert listed == [created.json()]
    assert listed[0]["location"] == "s3://rec/1.webm"
    assert error(await env.http.get("/v1/meetings/yes/recordings")) == (401, "unauthenticated")


# --- any body ----------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=20), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "title": JSON | st.text(max_size=250),
        "scheduled_start": JSON | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        "settings": JSON
        | st.fixed_dictionaries(
            {},
            optional={
                "max_participants": st.integers(-5, 20_000),
                "lobby": st.booleans(),
                "guests_allowed": JSON,
            },
        ),
        "host_user_ids": JSON | st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True), max_size=25),
    },
)


@pytest.fixture
async def owner(env: Env) -> dict[str, str]:
    return (await env.account("owner@example.test"))[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=FIELDS)
async def test_any_create_or_update_body_is_taken_whole_or_refused_with_a_4xx(
    env: Env, owner: dict[str, str], body: dict[str, Any]
) -> None:
    created = await env.http.post("/v1/meetings", json=body, headers=owner)
    assert created.status_code in {201, 422}, created.text
    if created.status_code == 422:
        assert created.json()["error"]["code"] == "invalid_request"
        return
    meeting_id = created.json()["meeting_id"]
    assert (await env.http.get(f"/v1/meetings/{meeting_id}")).json() == created.json()
    updated = await env.http.patch(f"/v1/meetings/{meeting_id}", json=body, headers=owner)
    assert updated.status_code in {200, 422}, updated.text


async def test_with_postgres_down_the_meeting_routes_answer_503(
    short_config: Config, signer: TokenSigner, verifier: TokenVerifier
) -> None:
    server = contextlib.ExitStack()
    store = await PostgresMeetingStore.open(server.enter_context(throwaway_postgres()), connect_timeout_s=2)
    try:
        async for env in make_env(short_config, signer, verifier, store):
            _, owner = await env.account("owner@example.test")
            await env.create(owner, meeting_id="m", settings={"lobby": True, "recording_allowed": True})
            ticket = (await env.join("m")).json()["ticket"]

            server.close()  # stops the server and deletes its data

            recording = {"started_at": "2031-01-01T10:00:00Z", "location": "s3://r"}
            for method, path, body in [
                ("GET", "/v1/meetings", None),
                ("PATCH", "/v1/meetings/m", {"title": "new"}),
                ("POST", "/v1/meetings/m/end", None),
                ("POST", "/v1/meetings/m/lock", None),
                ("GET", "/v1/meetings/m/lobby", None),
                ("POST", "/v1/meetings/m/lobby/poll", {"ticket": ticket}),
                ("GET", "/v1/meetings/m/history", None),
                ("POST", "/v1/meetings/m/recordings", recording),
                ("GET", "/v1/meetings/m/recordings", None),
            ]:
                response = await env.http.request(method, path, json=body, headers=owner)
                assert error(response) == (503, "store_unavailable"), (method, path, response.text)
    finally:
        server.close()
        await store.close()
