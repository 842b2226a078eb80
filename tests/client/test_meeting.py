"""`MeetingClient` against a real worker and control plane: late joiners start at keyframes, leaving and
unpublishing update everyone's view, keyframe requests start new groups, refused requests raise typed
errors, and clients whose worker restarts join again by themselves."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from darktower.client.backoff import ReconnectPolicy
from darktower.client.errors import MeetingNotFoundError, RequestRefusedError
from darktower.client.meeting import MeetingClient
from darktower.client.roster import RemoteTrack
from darktower.proto.frame import FrameHeader

if TYPE_CHECKING:
    from conftest import Cluster

TIMEOUT = 15.0
FAST_RECONNECT = ReconnectPolicy(initial_s=0.05, maximum_s=0.5, max_attempts=20)


async def test_a_late_joiner_starts_at_keyframes_and_leaving_updates_rosters(cluster: Cluster) -> None:
    alice = await cluster.join("late", "alice")
    bob = await cluster.join("late", "bob")
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(cluster.receives(alice, bob, minimum=45))
        await bob.wait_until(cluster.receives(bob, alice, minimum=45))
    carol = await cluster.join("late", "carol")
    async with asyncio.timeout(TIMEOUT):
        await carol.wait_until(lambda: cluster.receives(carol, alice)() and cluster.receives(carol, bob)())
        await alice.wait_until(lambda: carol.participant_id in alice.roster)
    for publisher in (alice, bob):
        first = carol.stats.track(publisher.participant_id, "video").first_frame
        assert first is not None
        assert (first.keyframe, first.object_seq) == (True, 0)
    assert set(carol.roster) == {alice.participant_id, bob.participant_id}

    gone = carol.participant_id
    carol_tracks = {t for t, track in alice.tracks.items() if track.participant_id == gone}
    assert len(carol_tracks) == 2
    await carol.leave()
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(lambda: gone not in alice.roster)
        await bob.wait_until(lambda: gone not in bob.roster)
    for client in (alice, bob, carol):
        assert client.stats.summary()["corrupt"] == 0
    for client in (alice, bob):
        assert not carol_tracks & set(client.tracks)
        assert not carol_tracks & client.subscriptions


async def test_unpublishing_removes_the_track_for_everyone(cluster: Cluster) -> None:
    alice = await cluster.join("unpublish", "alice")
    bob = await cluster.join("unpublish", "bob", publish=False)
    video = next(t for t, track in alice.tracks.items() if track.kind == "video")
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: video in bob.subscriptions)
    await alice.unpublish(video)
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: video not in bob.tracks)
    assert video not in bob.subscriptions
    assert [track.kind for track in bob.tracks.values()] == ["audio"]
    assert bob.sent == {"audio": 0, "video": 0}


async def test_a_keyframe_request_makes_the_publisher_start_a_new_group(cluster: Cluster) -> None:
    seen: list[tuple[int, int]] = []

    def on_frame(track: RemoteTrack, header: FrameHeader, data: bytes, ok: bool) -> None:
        if track.kind == "video":
            seen.append((header.group, header.object_seq))

    alice = await cluster.join("keyframe", "alice")
    bob = await cluster.join("keyframe", "bob", publish=False, on_frame=on_frame)
    video = next(t for t, track in alice.tracks.items() if track.kind == "video")
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: len(seen) >= 40)
    group = seen[-1][0]
    await bob.request_keyframe(video)
    async with asyncio.timeout(TIMEOUT):
        await bob.wait_until(lambda: seen[-1][0] > group)
    assert next(frame for frame in seen if frame[0] > group) == (group + 1, 0)
    assert max(seq for g, seq in seen if g == group) < 59, "the group ended before its 2 s cadence"


async def test_a_refused_request_raises_its_error_code_and_the_session_goes_on(cluster: Cluster) -> None:
    alice = await cluster.join("refusals", "alice", publish=False)
    with pytest.raises(RequestRefusedError) as raised:
        await alice.subscribe(4242)
    assert (raised.value.code, raised.value.fatal) == ("unknown_track", False)
    assert await alice.ping() >= 0
    assert alice.connected


async def test_joining_a_meeting_that_does_not_exist_fails_with_its_code(cluster: Cluster) -> None:
    client = MeetingClient(cluster.api, "no-such-meeting", "alice")
    with pytest.raises(MeetingNotFoundError):
        await client.join()
    assert not client.connected


async def test_clients_rejoin_by_themselves_when_their_worker_restarts(cluster: Cluster) -> None:
    alice = await cluster.join("restart", "alice", reconnect=FAST_RECONNECT)
    bob = await cluster.join("restart", "bob", reconnect=FAST_RECONNECT)
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(cluster.receives(alice, bob))
    before = bob.participant_id
    await cluster.restart_worker()
    async with asyncio.timeout(TIMEOUT):
        await alice.wait_until(lambda: alice.reconnects == 1 and alice.connected)
        await bob.wait_until(lambda: bob.reconnects == 1 and bob.connected)
        await alice.wait_until(cluster.receives(alice, bob))
        await bob.wait_until(cluster.receives(bob, alice))
    assert bob.participant_id != before
    assert (alice.failure, bob.failure) == (None, None)
    assert set(alice.roster) == {bob.participant_id}
    assert alice.stats.summary()["corrupt"] == 0
