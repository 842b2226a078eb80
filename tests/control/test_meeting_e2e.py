"""A host's REST action reaches a real running worker: the control plane (served over HTTP) ends a meeting
through the worker's admin socket, the Python client in it is closed and cannot come back, and the
meeting's history shows who was there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from darktower.client.api import ControlApi
from darktower.client.backoff import ReconnectPolicy
from darktower.client.meeting import MeetingClient
from darktower.control.main import run_control
from darktower.core.certs import ServingCertificate
from darktower.core.config import from_mapping
from darktower.core.tokens import TokenVerifier, load_or_create_signing_key, signing_key_path
from darktower.workers.admin import AdminChannel
from darktower.workers.server import WorkerServer

TIMEOUT_S = 15.0
PASSWORD = "correct horse battery"


@dataclass
class Node:
    http_url: str
    worker: WorkerServer


@pytest.fixture
async def node(tmp_path: Path, serving_certificate: ServingCertificate) -> AsyncIterator[Node]:
    """One worker with its admin channel and one control plane, as `darktower serve` runs them."""
    config = from_mapping(
        {
            "server": {"host": "127.0.0.1", "http_port": 0, "quic_port": 0, "data_dir": str(tmp_path / "d")},
            "tls": {
                "certificate": str(serving_certificate.cert_path),
                "private_key": str(serving_certificate.key_path),
            },
            "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
            "log": {"level": "warning"},
        }
    )
    key = load_or_create_signing_key(signing_key_path(config.server.data_dir, config.auth.signing_key))
    worker = await WorkerServer.start(config, verifier=TokenVerifier(key.public_key(), config.auth.issuer))
    admin = await AdminChannel.start(config.server.data_dir, 0, worker)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    control = asyncio.create_task(run_control(config, worker.port, on_ready=ready.set_result, stop=stop))
    try:
        async with asyncio.timeout(TIMEOUT_S):
            port = await ready
        yield Node(f"http://127.0.0.1:{port}", worker)
    finally:
        stop.set()
        await control
        await admin.close()
        await worker.close()


async def test_a_rest_end_closes_the_python_client_and_history_shows_it(node: Node) -> None:
    async with (
        httpx.AsyncClient(base_url=node.http_url, timeout=TIMEOUT_S) as http,
        ControlApi(node.http_url) as api,
    ):
        await http.post("/v1/users", json={"email": "host@example.test", "password": PASSWORD})
        login = await http.post("/v1/auth/login", json={"email": "host@example.test", "password": PASSWORD})
        host = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = await http.post("/v1/meetings", json={"meeting_id": "e2e"}, headers=host)
        assert created.status_code == 201

        fast = ReconnectPolicy(initial_s=0.01, maximum_s=0.05, max_attempts=5)
        guest = MeetingClient(api, "e2e", "Guest", reconnect=fast)
        await guest.join()
        await guest.publish("audio")
        assert [m["meeting_id"] for m in node.worker.live_meetings()] == ["e2e"]

        ended = await http.post("/v1/meetings/e2e/end", headers=host)
        assert ended.status_code == 200, ended.text
        async with asyncio.timeout(TIMEOUT_S):
            await guest.wait_until(lambda: guest.failure is not None)
        assert guest.failure is not None
        assert guest.failure.code == "ended"  # told by the worker; the client does not try again
        assert not guest.connected
        assert node.worker.live_meetings() == []

        history = (await http.get("/v1/meetings/e2e/history", headers=host)).json()["events"]
        assert [(e["display_name"], e["kind"], e["reason"]) for e in history] == [
            ("Guest", "joined", ""),
            ("Guest", "left", "ended"),
        ]
        await guest.leave()


async def test_a_muted_client_stops_its_audio_and_a_removed_one_stays_out(node: Node) -> None:
    async with (
        httpx.AsyncClient(base_url=node.http_url, timeout=TIMEOUT_S) as http,
        ControlApi(node.http_url) as api,
    ):
        await http.post("/v1/users", json={"email": "h@example.test", "password": PASSWORD})
        login = await http.post("/v1/auth/login", json={"email": "h@example.test", "password": PASSWORD})
        host = {"Authorization": f"Bearer {login.json()['access_token']}"}
        await http.post("/v1/meetings", json={"meeting_id": "mr"}, headers=host)
        fast = ReconnectPolicy(initial_s=0.01, maximum_s=0.05, max_attempts=5)
        guest = MeetingClient(api, "mr", "Guest", reconnect=fast)
        await guest.join()
        audio = await guest.publish("audio")
        video = await guest.publish("video")
        base = f"/v1/meetings/mr/participants/{guest.participant_id}"

        muted = await http.post(f"{base}/mute", headers=host)
        assert muted.status_code == 200, muted.text
        async with asyncio.timeout(TIMEOUT_S):
            await guest.wait_until(lambda: guest.muted_by is not None)
        assert audio not in guest.tracks
        assert video in guest.tracks
        [meeting] = node.worker.live_meetings()
        assert [t["track_id"] for t in meeting["tracks"]] == [video]

        removed = await http.post(f"{base}/remove", headers=host)
        assert removed.status_code == 200, removed.text
        async with asyncio.timeout(TIMEOUT_S):
            await guest.wait_until(lambda: guest.failure is not None)
        assert guest.failure is not None
        assert guest.failure.code == "removed"
        assert not guest.connected
        assert node.worker.live_meetings() == []
        await guest.leave()
