"""Host actions through `darktower serve --workers 3`: the control plane's REST action goes to the worker
that owns the meeting (not worker 0), through that worker's admin socket, and the Python client sees it."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from darktower.client.api import ControlApi
from darktower.client.backoff import ReconnectPolicy
from darktower.client.meeting import MeetingClient
from darktower.workers.cluster_io import unlink_rings
from darktower.workers.shard import owner_index

WORKERS = 3
DEADLINE_S = 60.0
"""Four fresh interpreters starting on a shared 2-core machine."""
PASSWORD = "correct horse battery"
DARKTOWER = str(Path(sys.executable).with_name("darktower"))


@pytest.fixture
async def http_url(tmp_path: Path) -> AsyncIterator[str]:
    """A running `darktower serve --workers 3` (one port per worker); its API's URL."""
    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKTOWER_")}
    env |= {
        "DARKTOWER_SERVER__STEERING": "port-per-worker",
        "DARKTOWER_AUTH__PASSWORD_HASH_TIME_COST": "1",
        "DARKTOWER_AUTH__PASSWORD_HASH_MEMORY_KIB": "64",
    }
    args = [
        "serve",
        "--data-dir",
        str(data),
        "--http-port",
        "0",
        "--quic-port",
        "0",
        "--workers",
        str(WORKERS),
    ]
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            DARKTOWER, *args, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env
        )
    assert process.stdout is not None
    url = ""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while (line := (await process.stdout.readline()).decode()) != "darktower: ready\n":
                assert line, (tmp_path / "stderr.log").read_text()
                url = (
                    line.removeprefix("darktower: serving HTTP API on ").strip()
                    if "HTTP API" in line
                    else url
                )
        yield url
    finally:
        process.terminate()
        async with asyncio.timeout(DEADLINE_S):
            await process.communicate()
        unlink_rings(str(data), WORKERS)


async def test_rest_host_actions_reach_the_owner_among_three_workers(http_url: str) -> None:
    meeting_id = next(m for m in (f"meeting-{n}" for n in itertools.count()) if owner_index(m, WORKERS) == 2)
    async with httpx.AsyncClient(base_url=http_url, timeout=DEADLINE_S) as http, ControlApi(http_url) as api:
        await http.post("/v1/users", json={"email": "host@example.test", "password": PASSWORD})
        login = await http.post("/v1/auth/login", json={"email": "host@example.test", "password": PASSWORD})
        host = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (
            await http.post("/v1/meetings", json={"meeting_id": meeting_id}, headers=host)
        ).status_code == 201

        guest = MeetingClient(
            api, meeting_id, "Guest", reconnect=ReconnectPolicy(initial_s=0.05, max_attempts=5)
        )
        await guest.join()
        audio = await guest.publish("audio")
        base = f"/v1/meetings/{meeting_id}/participants/{guest.participant_id}"
        muted = await http.post(f"{base}/mute", headers=host)  # any worker but the owner: 404
        assert muted.status_code == 200, muted.text
        # The client drops its muted audio (audio it sent before hearing of the mute is dropped quietly
        # by the worker, tests/workers/test_host_actions.py) and stays in the meeting.
        async with asyncio.timeout(DEADLINE_S):
            await guest.wait_until(lambda: guest.muted_by is not None)
        assert audio not in guest.tracks
        await guest.ping()
        assert (guest.connected, guest.reconnects) == (True, 0)
        locked = await http.post(f"/v1/meetings/{meeting_id}/lock", headers=host)
        assert locked.status_code == 200, locked.text

        ended = await http.post(f"/v1/meetings/{meeting_id}/end", headers=host)
        assert ended.status_code == 200, ended.text
        async with asyncio.timeout(DEADLINE_S):
            await guest.wait_until(lambda: guest.failure is not None)
        assert guest.failure is not None
        assert guest.failure.code == "ended"  # told by the worker; the client does not try again
        history = (await http.get(f"/v1/meetings/{meeting_id}/history", headers=host)).json()["events"]
        assert [(e["display_name"], e["kind"], e["reason"]) for e in history] == [
            ("Guest", "joined", ""),
            ("Guest", "left", "ended"),
        ]
        await guest.leave()
