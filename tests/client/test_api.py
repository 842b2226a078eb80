"""The control API client against the real control app (in process): meetings, joins, typed errors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from darktower.client.api import ControlApi
from darktower.client.errors import ApiError, MeetingExistsError, MeetingNotFoundError
from darktower.control.app import create_app
from darktower.control.store import InMemoryMeetingStore
from darktower.core.config import from_mapping
from darktower.core.tokens import TokenSigner, TokenVerifier

HASHES = [bytes(range(32)), bytes(32)]


@pytest.fixture
async def api(tmp_path: Path, token_keys: tuple[TokenSigner, TokenVerifier]) -> AsyncIterator[ControlApi]:
    config = from_mapping({"server": {"data_dir": str(tmp_path), "public_host": "media.example"}})
    store = InMemoryMeetingStore()
    app = create_app(
        config=config,
        signer=token_keys[0],
        store=store,
        certificate_hashes=lambda: list(HASHES),
        quic_port=4999,
    )
    async with ControlApi("http://control.test", transport=httpx.ASGITransport(app=app)) as client:
        yield client
    await store.close()


async def test_a_meeting_is_created_and_read_back(api: ControlApi) -> None:
    created = await api.create_meeting("standup", title="Daily")
    assert (created.meeting_id, created.title) == ("standup", "Daily")
    assert await api.get_meeting("standup") == created


async def test_without_an_id_the_server_picks_one(api: ControlApi) -> None:
    created = await api.create_meeting()
    assert len(created.meeting_id) >= 10
    assert (await api.get_meeting(created.meeting_id)).meeting_id == created.meeting_id


async def test_ensure_meeting_tolerates_an_existing_meeting(api: ControlApi) -> None:
    first = await api.ensure_meeting("m1", title="first")
    again = await api.ensure_meeting("m1", title="second")
    assert again == first
    with pytest.raises(MeetingExistsError) as raised:
        await api.create_meeting("m1")
    assert (raised.value.code, raised.value.status) == ("meeting_exists", 409)


async def test_an_unknown_meeting_raises_meeting_not_found(api: ControlApi) -> None:
    with pytest.raises(MeetingNotFoundError) as raised:
        await api.get_meeting("nope")
    assert (raised.value.code, raised.value.status) == ("meeting_not_found", 404)
    with pytest.raises(MeetingNotFoundError):
        await api.join("nope", "alice")


async def test_join_returns_what_the_media_session_needs(
    api: ControlApi, token_keys: tuple[TokenSigner, TokenVerifier]
) -> None:
    await api.create_meeting("m2")
    info = await api.join("m2", "alice", publish=False)
    assert info.meeting_id == "m2"
    assert info.webtransport_url == "https://media.example:4999/meetings/m2"
    assert info.certificate_hashes == HASHES
    grant = token_keys[1].verify(info.token, meeting_id="m2", now=info.expires_at.timestamp() - 60)
    assert (grant.participant_id, grant.display_name) == (info.participant_id, "alice")
    assert (grant.can_publish, grant.can_subscribe) == (False, True)
    assert grant.expires_at == int(info.expires_at.timestamp())


async def test_a_refused_request_carries_the_api_error_code(api: ControlApi) -> None:
    with pytest.raises(ApiError) as raised:
        await api.create_meeting("not a valid id!")
    assert (raised.value.code, raised.value.status) == ("invalid_request", 422)
    await api.create_meeting("m3")
    with pytest.raises(ApiError) as raised:
        await api.join("m3", "")
    assert raised.value.code == "invalid_request"


async def test_an_unreachable_server_is_reported_as_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ControlApi(f"http://127.0.0.1:{port}", timeout=2.0) as api:
        with pytest.raises(ApiError) as raised:
            await api.get_meeting("m")
    assert raised.value.code == "unavailable"
    assert raised.value.status is None
