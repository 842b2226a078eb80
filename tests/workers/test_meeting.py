"""Meetings: roster, track ids, subscriptions, forwarding, keyframe requests, replacement and departures,
driven through `WorkerCore` with real tokens, messages and frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from darktower.core.config import LimitsConfig
from darktower.core.tokens import JoinGrant
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import MAX_U32
from darktower.proto.signaling import encode_delimited
from darktower.workers.actions import EndVideoGroup, SendDatagram, SendVideo
from darktower.workers.errors import RequestRefusedError
from darktower.workers.meeting import Meeting

if TYPE_CHECKING:
    from conftest import World

AUDIO = pb.TRACK_KIND_AUDIO
VIDEO = pb.TRACK_KIND_VIDEO


def error_of(reply: pb.ServerMessage) -> tuple[str, bool]:
    assert reply.WhichOneof("body") == "error", reply
    return pb.ErrorCode.Name(reply.error.code), reply.error.fatal


def keyframe_requests(world: World, session: int) -> list[int]:
    return [
        m.keyframe_request.track_id for m in world.take(session) if m.WhichOneof("body") == "keyframe_request"
    ]


def error_free(world: World, session: int) -> bool:
    return all(m.WhichOneof("body") != "error" for m in world.take(session))


# --- roster ------------------------------------------------------------------------------------------


def test_join_returns_roster_and_tracks_and_tells_the_others(world: World) -> None:
    alice, response = world.join("alice", name="Alice A.")
    assert response.participant_id == "alice"
    assert response.meeting_id == "m1"
    assert list(response.roster) == []
    assert list(response.tracks) == []
    assert response.max_frame_payload_bytes == world.limits.max_frame_payload_bytes
    audio = world.publish(alice, AUDIO, label="microphone")

    bob, response = world.join("bob", publish=False)
    assert [(p.participant_id, p.display_name, p.can_publish, p.can_subscribe) for p in response.roster] == [
        ("alice", "Alice A.", True, True)
    ]
    assert [(t.track_id, t.participant_id, t.kind, t.codec, t.label) for t in response.tracks] == [
        (audio, "alice", AUDIO, "opus", "microphone")
    ]
    [(body, joined)] = world.events(alice)
    assert body == "participant_joined"
    assert joined.participant == pb.Participant(
        participant_id="bob",
        display_name="Bob",
        can_publish=False,
        can_subscribe=True,
        role=pb.ROLE_PARTICIPANT,
    )
    assert world.events(bob) == []


def test_track_ids_are_meeting_wide_and_never_reused(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    first = world.publish(alice, AUDIO)
    second = world.publish(bob, VIDEO)
    reply = world.request(alice, pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=first)))
    assert reply.WhichOneof("body") == "ack"
    third = world.publish(alice, AUDIO)
    assert (first, second, third) == (1, 2, 3)
    _, other = world.join("carol", meeting_id="m2")
    assert other.tracks == []


def test_publishing_tells_everyone_else(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.take_all()
    track = world.publish(alice, VIDEO, codec="vp09.00.10.08", label="camera")
    [(body, published)] = world.events(bob)
    assert body == "track_published"
    assert published.track == pb.Track(
        track_id=track, participant_id="alice", kind=VIDEO, codec="vp09.00.10.08", label="camera"
    )
    assert world.events(alice) == []


# --- audio -------------------------------------------------------------------------------------------


def test_audio_goes_to_every_subscriber_as_one_action_with_the_same_bytes(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    dave, _ = world.join("dave")
    track = world.publish(alice, AUDIO)
    for session in (bob, carol):
        assert world.subscribe(session, track).WhichOneof("body") == "ack"
    world.take_all()
    frame = world.audio_frame(track, 1)
    actions = world.datagram(alice, frame)
    assert actions == [SendDatagram((bob, carol), frame)]
    [action] = actions
    assert isinstance(action, SendDatagram)
    assert action.data is frame
    assert world.datagrams[bob] == [frame]
    assert world.datagrams[dave] == world.datagrams[alice] == []
    assert world.inbox[alice] == []  # audio subscriptions ask for no keyframes


def test_audio_without_subscribers_goes_nowhere(world: World) -> None:
    alice, _ = world.join("alice")
    track = world.publish(alice, AUDIO)
    assert world.datagram(alice, world.audio_frame(track, 1)) == []


def test_subscribing_twice_is_harmless(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, AUDIO)
    world.subscribe(bob, track)
    assert world.subscribe(bob, track).WhichOneof("body") == "ack"
    world.datagram(alice, world.audio_frame(track, 1))
    assert len(world.datagrams[bob]) == 1


def test_unsubscribed_audio_stops(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, AUDIO)
    world.subscribe(bob, track)
    reply = world.request(bob, pb.ClientMessage(unsubscribe=pb.Unsubscribe(track_id=track)))
    assert reply.WhichOneof("body") == "ack"
    assert world.datagram(alice, world.audio_frame(track, 1)) == []


# --- video -------------------------------------------------------------------------------------------


def send_group(world: World, session: int, track: int, group: int, frames: int = 3) -> list[bytes]:
    stream_id = world.new_stream_id(session)
    data = [world.video_frame(track, group, seq) for seq in range(frames)]
    for seq, frame in enumerate(data):
        world.stream(session, stream_id, frame, end=seq == frames - 1)
    return data


def test_video_group_goes_to_subscribers_on_one_stream_each(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    world.subscribe(carol, track)
    stream_id = world.new_stream_id(alice)
    keyframe = world.video_frame(track, 0, 0)
    assert world.stream(alice, stream_id, keyframe) == [
        SendVideo((bob, carol), track, 0, keyframe, starts_group=True)
    ]
    delta = world.video_frame(track, 0, 1)
    assert world.stream(alice, stream_id, delta) == [
        SendVideo((bob, carol), track, 0, delta, starts_group=False)
    ]
    assert world.stream(alice, stream_id, b"", end=True) == [EndVideoGroup((bob, carol), track, 0)]
    for session in (bob, carol):
        [stream] = world.streams[session]
        assert (stream.group, stream.frames, stream.ended) == (0, [keyframe, delta], True)


def test_frames_cut_anywhere_are_forwarded_whole(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    frames = [world.video_frame(track, 5, seq, payload=bytes(range(seq * 10))) for seq in range(4)]
    data = b"".join(frames)
    stream_id = world.new_stream_id(alice)
    for start in range(0, len(data), 7):
        world.stream(alice, stream_id, data[start : start + 7])
    world.stream(alice, stream_id, b"", end=True)
    assert world.video_frames(bob, track) == [frames]
    assert world.streams[bob][0].ended


def test_late_subscriber_starts_at_the_next_keyframe_and_asks_for_one(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    stream_id = world.new_stream_id(alice)
    keyframe = world.video_frame(track, 0, 0)
    world.stream(alice, stream_id, keyframe)
    world.take_all()
    world.advance(2)

    world.subscribe(carol, track)
    assert keyframe_requests(world, alice) == [track]
    delta = world.video_frame(track, 0, 1)
    world.stream(alice, stream_id, delta, end=True)
    assert world.streams[carol] == []
    next_group = send_group(world, alice, track, 1)
    assert world.video_frames(carol, track) == [next_group]
    assert world.video_frames(bob, track) == [[keyframe, delta], next_group]


def test_keyframe_requests_are_rate_limited_per_track(world: World) -> None:
    alice, _ = world.join("alice")
    camera = world.publish(alice, VIDEO)
    screen = world.publish(alice, VIDEO)
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    world.take_all()
    world.subscribe(bob, camera)
    world.subscribe(bob, screen)
    world.subscribe(carol, camera)
    assert keyframe_requests(world, alice) == [camera, screen]
    world.advance(0.999)
    reply = world.request(carol, pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=camera)))
    assert reply.WhichOneof("body") == "ack"
    assert keyframe_requests(world, alice) == []
    world.advance(0.001)
    world.request(carol, pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=camera)))
    assert keyframe_requests(world, alice) == [camera]
    world.advance(-60)  # the wall clock stepped back
    world.request(carol, pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=camera)))
    assert keyframe_requests(world, alice) == [camera]


def test_held_back_keyframe_request_goes_out_once_the_interval_passed(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    dave, _ = world.join("dave")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    assert keyframe_requests(world, alice) == [track]
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(track, 0, 0))
    world.subscribe(carol, track)  # the group bob asked for has started: carol waits, her request is held
    assert keyframe_requests(world, alice) == []
    world.advance(0.5)
    world.stream(alice, stream_id, world.video_frame(track, 0, 1))
    assert keyframe_requests(world, alice) == []
    world.advance(0.5)
    world.stream(alice, stream_id, world.video_frame(track, 0, 2))
    assert keyframe_requests(world, alice) == [track]
    world.stream(alice, stream_id, world.video_frame(track, 0, 3), end=True)
    assert keyframe_requests(world, alice) == []
    next_group = send_group(world, alice, track, 1)
    assert world.video_frames(carol, track) == [next_group]
    world.advance(0.1)
    world.subscribe(dave, track)  # within the interval again: held back, owed
    send_group(world, alice, track, 2)  # ...and served by the next group, so nothing is owed any more
    world.advance(2)
    send_group(world, alice, track, 3)
    assert keyframe_requests(world, alice) == []


def test_lagging_subscriber_skips_to_the_next_group(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    world.subscribe(carol, track)
    world.advance(5)
    world.take_all()
    stream_id = world.new_stream_id(alice)
    keyframe = world.video_frame(track, 0, 0)
    world.stream(alice, stream_id, keyframe)

    world.lagging(bob, track)
    assert keyframe_requests(world, alice) == [track]
    world.lagging(bob, track)
    assert keyframe_requests(world, alice) == []  # within the second
    rest = [world.video_frame(track, 0, seq) for seq in (1, 2)]
    for frame in rest:
        world.stream(alice, stream_id, frame)
    assert world.stream(alice, stream_id, b"", end=True) == [EndVideoGroup((carol,), track, 0)]
    assert world.video_frames(carol, track) == [[keyframe, *rest]]
    assert world.video_frames(bob, track) == [[keyframe]]
    next_group = send_group(world, alice, track, 1)
    assert world.video_frames(bob, track) == [[keyframe], next_group]


def test_lagging_report_for_a_track_not_subscribed_is_ignored(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, VIDEO)
    assert world.lagging(bob, track) == []
    assert world.lagging(bob, 999) == []


def test_a_new_group_supersedes_an_unfinished_one(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    old, new = world.new_stream_id(alice), world.new_stream_id(alice)
    world.stream(alice, old, world.video_frame(track, 0, 0))
    new_keyframe = world.video_frame(track, 1, 0)
    world.stream(alice, new, new_keyframe)
    assert world.stream(alice, old, world.video_frame(track, 0, 1), end=True) == []
    late = world.video_frame(track, 1, 1)
    world.stream(alice, new, late, end=True)
    assert world.video_frames(bob, track) == [[world.video_frame(track, 0, 0)], [new_keyframe, late]]
    assert all(stream.ended for stream in world.streams[bob])


def test_a_reset_stream_ends_its_group(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(track, 0, 0) + world.video_frame(track, 0, 1)[:10])
    assert world.reset(alice, stream_id) == [EndVideoGroup((bob,), track, 0)]
    assert world.reset(alice, stream_id) == []
    assert error_free(world, alice)


def test_unsubscribing_mid_group_ends_that_subscribers_stream_only(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    world.subscribe(carol, track)
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(track, 0, 0))
    message = pb.ClientMessage(request_id=99, unsubscribe=pb.Unsubscribe(track_id=track))
    actions = world.signaling(bob, encode_delimited(message))
    assert EndVideoGroup((bob,), track, 0) in actions
    assert world.streams[bob][0].ended
    world.stream(alice, stream_id, world.video_frame(track, 0, 1), end=True)
    assert [len(frames) for frames in world.video_frames(bob, track)] == [1]
    assert [len(frames) for frames in world.video_frames(carol, track)] == [2]


def test_unpublishing_ends_the_group_and_the_subscriptions(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    track = world.publish(alice, VIDEO)
    world.subscribe(bob, track)
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(track, 0, 0))
    world.take_all()
    reply = world.request(alice, pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=track)))
    assert reply.WhichOneof("body") == "ack"
    assert world.streams[bob][0].ended
    assert world.events(bob) == [("track_unpublished", pb.TrackUnpublished(track_id=track))]
    assert world.stream(alice, stream_id, world.video_frame(track, 0, 1), end=True) == []
    assert error_free(world, alice)
    assert error_of(world.subscribe(bob, track)) == ("ERROR_CODE_UNKNOWN_TRACK", False)


# --- refusals ----------------------------------------------------------------------------------------


def test_permissions_are_enforced_without_closing_the_session(world: World) -> None:
    viewer, _ = world.join("viewer", publish=False)
    speaker, _ = world.join("speaker", subscribe=False)
    track = world.publish(speaker, AUDIO)
    reply = world.request(viewer, pb.ClientMessage(publish=pb.PublishTrack(kind=AUDIO, codec="opus")))
    assert error_of(reply) == ("ERROR_CODE_FORBIDDEN", False)
    assert error_of(world.subscribe(speaker, track)) == ("ERROR_CODE_FORBIDDEN", False)
    reply = world.request(viewer, pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=track)))
    assert error_of(reply) == ("ERROR_CODE_FORBIDDEN", False)
    assert world.subscribe(viewer, track).WhichOneof("body") == "ack"
    assert world.closed == {}


def test_track_count_is_limited(make_world: Callable[..., World]) -> None:
    world = make_world(max_tracks_per_participant=2)
    alice, _ = world.join("alice")
    world.publish(alice, AUDIO)
    world.publish(alice, VIDEO)
    reply = world.request(alice, pb.ClientMessage(publish=pb.PublishTrack(kind=VIDEO, codec="vp8")))
    assert error_of(reply) == ("ERROR_CODE_FORBIDDEN", False)


@pytest.mark.parametrize(
    "message",
    [
        pb.ClientMessage(subscribe=pb.Subscribe(track_id=42)),
        pb.ClientMessage(unsubscribe=pb.Unsubscribe(track_id=42)),
        pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=42)),
        pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=42)),
    ],
    ids=lambda m: m.WhichOneof("body"),
)
def test_unknown_tracks_are_refused(world: World, message: pb.ClientMessage) -> None:
    alice, _ = world.join("alice")
    assert error_of(world.request(alice, message)) == ("ERROR_CODE_UNKNOWN_TRACK", False)


def test_a_full_meeting_refuses_newcomers_but_not_returning_participants(
    make_world: Callable[..., World],
) -> None:
    world = make_world(max_participants_per_meeting=2)
    alice, _ = world.join("alice")
    world.join("bob")
    carol = world.open()
    reply = world.request(carol, pb.ClientMessage(join=pb.Join(token=world.token("m1", "carol"))))
    assert error_of(reply) == ("ERROR_CODE_MEETING_FULL", True)
    assert world.closed[carol].code == pb.ERROR_CODE_MEETING_FULL
    world.join("alice")
    assert world.closed[alice].code == pb.ERROR_CODE_REPLACED
    assert world.core.dump()["meetings"]["m1"]["participants"] == ["bob", "alice"]


def test_track_ids_run_out_as_a_refusal() -> None:
    meeting = Meeting("m1", LimitsConfig(), lambda _: None)
    grant = JoinGrant(
        "m1", "alice", "Alice", can_publish=True, can_subscribe=True, expires_at=0, token_id="t"
    )
    member, _ = meeting.join(1, 1, grant)
    meeting._next_track_id = MAX_U32
    meeting.publish(member, 2, AUDIO, "opus", "")
    with pytest.raises(RequestRefusedError) as refused:
        meeting.publish(member, 3, AUDIO, "opus", "")
    assert refused.value.code == pb.ERROR_CODE_INTERNAL
    assert not refused.value.fatal
    assert list(meeting.tracks) == [MAX_U32]


# --- replacement and departures ----------------------------------------------------------------------


def test_joining_again_replaces_the_old_session(world: World) -> None:
    old, _ = world.join("alice")
    bob, _ = world.join("bob")
    audio = world.publish(old, AUDIO)
    bobs_track = world.publish(bob, VIDEO)
    world.subscribe(bob, audio)
    world.subscribe(old, bobs_track)
    world.take_all()

    new, response = world.join("alice", name="Alice again")
    [replaced] = world.take(old)
    assert error_of(replaced) == ("ERROR_CODE_REPLACED", True)
    assert world.closed[old].code == pb.ERROR_CODE_REPLACED
    assert [p.participant_id for p in response.roster] == ["bob"]
    assert [t.track_id for t in response.tracks] == [bobs_track]
    events = world.events(bob)
    assert events[0] == ("track_unpublished", pb.TrackUnpublished(track_id=audio))
    assert events[1][0] == "participant_joined"
    assert events[1][1].participant.display_name == "Alice again"
    assert len(events) == 2

    assert world.datagram(old, world.audio_frame(audio, 1)) == []
    assert world.signaling(old, encode_delimited(pb.ClientMessage(request_id=5, ping=pb.Ping()))) == []
    assert world.disconnect(old) == []
    assert world.events(bob) == []
    assert world.core.dump()["meetings"]["m1"] == {"participants": ["bob", "alice"], "tracks": 1}
    stream_id = world.new_stream_id(bob)
    world.stream(bob, stream_id, world.video_frame(bobs_track, 0, 0), end=True)
    assert world.streams[old] == []
    assert world.subscribe(new, bobs_track).WhichOneof("body") == "ack"


@pytest.mark.parametrize("how", ["leave", "disconnect"])
def test_departure_unpublishes_tracks_and_updates_rosters(world: World, how: str) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    audio = world.publish(alice, AUDIO)
    video = world.publish(alice, VIDEO)
    carols = world.publish(carol, AUDIO)
    world.subscribe(bob, audio)
    world.subscribe(bob, video)
    world.subscribe(alice, carols)
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(video, 0, 0))
    world.take_all()

    if how == "leave":
        reply = world.request(alice, pb.ClientMessage(leave=pb.Leave()))
        assert reply.WhichOneof("body") == "ack"
        assert world.closed[alice].code == 0
        reason = pb.ParticipantLeft.REASON_LEFT
    else:
        world.disconnect(alice)
        assert alice not in world.closed
        reason = pb.ParticipantLeft.REASON_DISCONNECTED
    for session in (bob, carol):
        assert world.events(session) == [
            ("track_unpublished", pb.TrackUnpublished(track_id=audio)),
            ("track_unpublished", pb.TrackUnpublished(track_id=video)),
            ("participant_left", pb.ParticipantLeft(participant_id="alice", reason=reason)),
        ]
    assert world.streams[bob][0].ended
    assert world.datagram(carol, world.audio_frame(carols, 1)) == []
    assert world.core.dump()["meetings"]["m1"] == {"participants": ["bob", "carol"], "tracks": 1}
    _, response = world.join("dave")
    assert [t.track_id for t in response.tracks] == [carols]


def test_the_last_departure_forgets_the_meeting(world: World) -> None:
    alice, _ = world.join("alice")
    world.publish(alice, AUDIO)
    bob, _ = world.join("bob", meeting_id="m2")
    world.request(alice, pb.ClientMessage(leave=pb.Leave()))
    assert list(world.core.dump()["meetings"]) == ["m2"]
    world.disconnect(bob)
    assert world.core.dump()["meetings"] == {}
    alice_again, response = world.join("alice")
    assert list(response.roster) == []
    assert world.publish(alice_again, AUDIO) == 1
