"""Meetings live through the supervisor's SIGHUP rolling restart and its SIGTERM drain, with two workers.

Real processes and real clients: `darktower serve --workers 2` with one port per worker, so the control
plane sends each meeting's participants to its owner worker, and one meeting owned by each worker. Each
meeting has two participants (the Python client, which rejoins by itself) that publish synthetic audio and
video and verify every byte they receive.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darktower.client.api import ControlApi
from darktower.client.backoff import ReconnectPolicy
from darktower.client.meeting import MeetingClient
from darktower.supervisor.status import read_status
from darktower.workers.shard import owner_index

if TYPE_CHECKING:
    from conftest import ServeProcess

WORKERS = 2
DEADLINE_S = 60.0
"""For anything that waits on fresh interpreters starting on a shared 2-core machine."""
RECONNECTS = {
    "alice": ReconnectPolicy(initial_s=0.1, maximum_s=1.0, max_attempts=60),
    "bob": ReconnectPolicy(initial_s=3.0, maximum_s=3.0, multiplier=1.0, jitter=0.1, max_attempts=20),
}
"""Patient enough for a worker's replacement to start (a fresh interpreter, seconds on a busy machine).
Bob comes back seconds after Alice: two clients whose joins reach the server in the same loop turn (their
Initials queued in the socket while the worker restarted) hit a client race: the other's ParticipantJoined
and TrackPublished can be applied before the client's own JoinResponse, which then resets its roster and
tracks, so it never subscribes. That is the Python client's to fix (`MeetingClient._connect`); this test is
about the server keeping meetings alive."""
FRAMES = 15
"""Audio and video frames each participant must receive from each other one, to count as flowing."""


def owned_meetings() -> list[str]:
    """One meeting id owned by each worker."""
    ids: dict[int, str] = {}
    for n in itertools.count():
        ids.setdefault(owner_index(f"meeting-{n}", WORKERS), f"meeting-{n}")
        if len(ids) == WORKERS:
            return [ids[index] for index in range(WORKERS)]
    raise AssertionError


def hears(receiver: MeetingClient, publisher: MeetingClient, frames: int = FRAMES) -> Callable[[], bool]:
    """Whether `receiver` has `frames` audio and video frames from `publisher`'s current session."""

    def check() -> bool:
        if not (receiver.connected and publisher.connected):
            return False
        pid = publisher.participant_id
        return all(receiver.stats.track(pid, kind).received >= frames for kind in ("audio", "video"))

    return check


def rejoined_once(client: MeetingClient) -> Callable[[], bool]:
    return lambda: client.connected and client.reconnects == 1


async def all_hear_each_other(meetings: list[tuple[MeetingClient, MeetingClient]]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        for alice, bob in meetings:
            await alice.wait_until(hears(alice, bob))
            await bob.wait_until(hears(bob, alice))
    for alice, bob in meetings:
        assert set(alice.roster) == {bob.participant_id}
        assert set(bob.roster) == {alice.participant_id}


async def join_pairs(
    stack: AsyncExitStack, api: ControlApi, meeting_ids: list[str]
) -> list[tuple[MeetingClient, MeetingClient]]:
    """Two publishing participants in each meeting; they leave when `stack` closes."""
    pairs = []
    for meeting_id in meeting_ids:
        await api.ensure_meeting(meeting_id)
        pair = []
        for name in ("alice", "bob"):
            client = MeetingClient(api, meeting_id, name, auto_subscribe=True, reconnect=RECONNECTS[name])
            await client.join()
            stack.push_async_callback(client.leave)
            await client.publish("audio")
            await client.publish("video")
            pair.append(client)
        pairs.append((pair[0], pair[1]))
    return pairs


def until_workers(data: str, what: str, check: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Waits until the heartbeat table's worker rows pass `check`."""
    deadline = time.monotonic() + DEADLINE_S
    while not check(workers := read_status(data)["workers"]):
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s: {workers}"
        time.sleep(0.05)


async def test_every_meeting_lives_through_a_rolling_restart_and_a_drain(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = serve(
        "--workers",
        str(WORKERS),
        DARKTOWER_SERVER__STEERING="port-per-worker",
        DARKTOWER_SERVER__DRAIN_TIMEOUT_S="120",
    )
    await asyncio.to_thread(server.wait_ready)
    async with ControlApi(server.http_url) as api, AsyncExitStack() as stack:
        meetings = await join_pairs(stack, api, owned_meetings())
        await all_hear_each_other(meetings)
        # Each meeting's participants are on its owner: the control plane named the owner's port.
        await asyncio.to_thread(
            until_workers,
            data,
            "2 connections per worker",
            lambda ws: [w["connections"] for w in ws] == [2, 2],
        )

        before = {client: client.participant_id for pair in meetings for client in pair}
        os.kill(server.process.pid, signal.SIGHUP)
        await asyncio.to_thread(server.wait_log, r"^rolling restart finished$", DEADLINE_S)
        # Every participant was on a replaced worker: each rejoined by itself, and each meeting is whole again.
        async with asyncio.timeout(DEADLINE_S):
            for client in before:
                await client.wait_until(rejoined_once(client))
        await all_hear_each_other(meetings)
        assert all(client.participant_id != pid for client, pid in before.items())
        assert all(client.failure is None for client in before)
        assert [w["restarts"] for w in read_status(data)["workers"]] == [1] * WORKERS

        # A drain keeps serving the open meetings: media still flows after SIGTERM...
        os.kill(server.process.pid, signal.SIGTERM)
        await asyncio.to_thread(
            until_workers, data, "every worker draining", lambda ws: {w["state"] for w in ws} == {"draining"}
        )
        counts = {
            (receiver, publisher): receiver.stats.track(publisher.participant_id, "video").received
            for alice, bob in meetings
            for receiver, publisher in ((alice, bob), (bob, alice))
        }
        async with asyncio.timeout(DEADLINE_S):
            for (receiver, publisher), count in counts.items():
                await receiver.wait_until(hears(receiver, publisher, count + FRAMES))
        assert all(client.reconnects == 1 for client in before)
    # ...and once everyone left, the workers exit without waiting out the drain timeout.
    assert await asyncio.to_thread(server.process.wait, DEADLINE_S) == 0
    for alice, bob in meetings:
        for client in (alice, bob):
            assert client.stats.summary()["corrupt"] == 0
