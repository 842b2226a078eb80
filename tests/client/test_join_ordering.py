"""A `JoinResponse` and the roster events right behind it in the same read: the events build on the
response. Two participants joining one worker in the same loop turn produce exactly this order, and a
client that applied its `JoinResponse` only when its joining coroutine resumed wiped the other's arrival
and never subscribed to it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from darktower.client.meeting import MeetingClient, _Connection
from darktower.client.receiver import MediaReceiver
from darktower.proto import signaling_pb2 as pb

if TYPE_CHECKING:
    from darktower.client.api import ControlApi
    from darktower.client.transport import WebTransportSession


async def test_a_participant_joining_right_after_the_join_response_is_kept() -> None:
    client = MeetingClient(cast("ControlApi", None), "m", "Alice")
    conn = _Connection(
        session=cast("WebTransportSession", None),
        signaling_stream=0,
        media=MediaReceiver(client.state.tracks, client.stats),
    )
    reply: asyncio.Future[pb.ServerMessage] = asyncio.get_running_loop().create_future()
    conn.pending[7] = reply
    own = pb.Participant(participant_id="alice", display_name="Alice")
    response = pb.JoinResponse(participant_id="alice", meeting_id="m", roster=[own])
    bob = pb.Participant(participant_id="bob", display_name="Bob")
    track = pb.Track(track_id=3, participant_id="bob", kind=pb.TRACK_KIND_VIDEO, codec="vp8")

    client._on_server_message(conn, pb.ServerMessage(request_id=7, join_response=response))
    client._on_server_message(
        conn, pb.ServerMessage(participant_joined=pb.ParticipantJoined(participant=bob))
    )
    client._on_server_message(conn, pb.ServerMessage(track_published=pb.TrackPublished(track=track)))
    await reply  # only now does the joining coroutine resume

    assert client.participant_id == "alice"
    assert set(client.roster) == {"bob"}
    assert set(client.tracks) == {3}
