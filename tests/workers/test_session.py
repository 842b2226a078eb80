"""Sessions: admission by join token, request/reply, and what malformed input costs a session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core.tokens import TokenSigner
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import encode_frame
from darktower.proto.signaling import encode_delimited, encode_varint
from darktower.workers.actions import CloseSession, SendSignaling

if TYPE_CHECKING:
    from conftest import World

AUDIO = pb.TRACK_KIND_AUDIO
VIDEO = pb.TRACK_KIND_VIDEO


def errors(world: World, session: int) -> list[tuple[str, bool, int]]:
    """(code name, fatal, request id) of each Error the session received since the last take."""
    return [
        (pb.ErrorCode.Name(m.error.code), m.error.fatal, m.request_id)
        for m in world.take(session)
        if m.WhichOneof("body") == "error"
    ]


def delimited(request_id: int, message: pb.ClientMessage | None = None) -> bytes:
    """The message (none: one without a body) with that request id, length-delimited."""
    message = message or pb.ClientMessage()
    message.request_id = request_id
    return encode_delimited(message)


# --- admission ---------------------------------------------------------------------------------------


def test_the_first_message_must_be_join(world: World) -> None:
    session = world.open()
    world.signaling(session, delimited(7, pb.ClientMessage(ping=pb.Ping(client_time_us=1))))
    assert errors(world, session) == [("ERROR_CODE_UNAUTHENTICATED", True, 7)]
    assert world.closed[session] == CloseSession(
        session, pb.ERROR_CODE_UNAUTHENTICATED, "the first message must be Join"
    )
    assert (
        world.signaling(
            session, delimited(8, pb.ClientMessage(join=pb.Join(token=world.token("m1", "alice"))))
        )
        == []
    )
    assert world.core.dump()["meetings"] == {}


def other_key_token(world: World) -> str:
    signer = TokenSigner(ec.generate_private_key(ec.SECP256R1()), "darktower-test", ttl_s=120)
    token, _ = signer.sign(
        meeting_id="m1",
        participant_id="eve",
        display_name="Eve",
        can_publish=True,
        can_subscribe=True,
        now=world.now_us / 1_000_000,
    )
    return token


TOKENS: dict[str, tuple[Callable[[World], str], str]] = {
    "missing": (lambda w: "", "ERROR_CODE_UNAUTHENTICATED"),
    "garbage": (lambda w: "not.a.jwt", "ERROR_CODE_TOKEN_INVALID"),
    "other key": (other_key_token, "ERROR_CODE_TOKEN_INVALID"),
    "tampered": (lambda w: w.token("m1", "eve")[:-4] + "AAAA", "ERROR_CODE_TOKEN_INVALID"),
    "expired": (
        lambda w: w.token("m1", "eve", signed_at=w.now_us / 1_000_000 - 3600),
        "ERROR_CODE_TOKEN_EXPIRED",
    ),
    "wrong meeting": (lambda w: w.token("m2", "eve"), "ERROR_CODE_WRONG_MEETING"),
}


@pytest.mark.parametrize("case", TOKENS)
def test_refused_tokens_close_the_session_with_their_code(world: World, case: str) -> None:
    alice, _ = world.join("alice")
    make_token, code = TOKENS[case]
    session = world.open("m1")
    reply = world.request(session, pb.ClientMessage(join=pb.Join(token=make_token(world))))
    assert reply.WhichOneof("body") == "error"
    assert (pb.ErrorCode.Name(reply.error.code), reply.error.fatal) == (code, True)
    assert world.closed[session].code == reply.error.code
    assert world.take(alice) == []
    assert world.core.dump()["meetings"]["m1"]["participants"] == ["alice"]


def test_a_token_is_accepted_until_it_expires(world: World) -> None:
    token = world.token("m1", "alice")
    world.advance(120)
    session = world.open()
    assert (
        world.request(session, pb.ClientMessage(join=pb.Join(token=token))).WhichOneof("body")
        == "join_response"
    )


def test_joining_twice_is_refused_without_closing(world: World) -> None:
    alice, _ = world.join("alice")
    reply = world.request(alice, pb.ClientMessage(join=pb.Join(token=world.token("m1", "alice"))))
    assert (reply.error.code, reply.error.fatal) == (pb.ERROR_CODE_ALREADY_JOINED, False)
    assert world.closed == {}


def test_the_same_participant_in_two_meetings_is_two_members(world: World) -> None:
    first, _ = world.join("alice", meeting_id="m1")
    world.join("alice", meeting_id="m2")
    assert world.closed == {}
    assert world.take(first) == []


# --- requests ----------------------------------------------------------------------------------------


def test_ping_is_answered_with_both_clocks(world: World) -> None:
    alice, _ = world.join("alice")
    world.advance(3)
    reply = world.request(alice, pb.ClientMessage(ping=pb.Ping(client_time_us=123)))
    assert reply.pong == pb.Pong(client_time_us=123, server_time_us=world.now_us)


def test_signaling_may_arrive_in_any_cuts(world: World) -> None:
    session = world.open()
    data = (
        delimited(1, pb.ClientMessage(join=pb.Join(token=world.token("m1", "alice"))))
        + delimited(2, pb.ClientMessage(ping=pb.Ping()))
        + delimited(3, pb.ClientMessage(publish=pb.PublishTrack(kind=AUDIO, codec="opus")))
    )
    for byte in data:
        world.signaling(session, bytes([byte]))
    replies = world.take(session)
    assert [(m.request_id, m.WhichOneof("body")) for m in replies] == [
        (1, "join_response"),
        (2, "pong"),
        (3, "publish_response"),
    ]


def test_leave_is_acknowledged_then_the_session_closes(world: World) -> None:
    alice, _ = world.join("alice")
    actions = world.signaling(
        alice,
        delimited(4, pb.ClientMessage(leave=pb.Leave())) + delimited(5, pb.ClientMessage(ping=pb.Ping())),
    )
    assert actions[-1] == CloseSession(alice, 0, "left the meeting")
    assert [(m.request_id, m.WhichOneof("body")) for m in world.take(alice)] == [(4, "ack")]


# --- malformed input ---------------------------------------------------------------------------------


def test_malformed_messages_get_errors_until_the_tolerance_is_passed(
    make_world: Callable[..., World],
) -> None:
    world = make_world(malformed_input_tolerance=3)
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.take_all()
    world.signaling(alice, encode_varint(3) + b"\xff\xff\xff")  # not a protobuf message
    world.signaling(alice, delimited(9))  # no body
    world.signaling(alice, delimited(0, pb.ClientMessage(ping=pb.Ping())))  # request id 0
    assert errors(world, alice) == [
        ("ERROR_CODE_MALFORMED", False, 0),
        ("ERROR_CODE_MALFORMED", False, 9),
        ("ERROR_CODE_MALFORMED", False, 0),
    ]
    assert world.request(alice, pb.ClientMessage(ping=pb.Ping())).WhichOneof("body") == "pong"
    assert alice not in world.closed
    world.signaling(alice, delimited(10))
    assert errors(world, alice) == [("ERROR_CODE_MALFORMED", True, 10)]
    assert world.closed[alice].code == pb.ERROR_CODE_MALFORMED
    assert world.events(bob) == [
        (
            "participant_left",
            pb.ParticipantLeft(participant_id="alice", reason=pb.ParticipantLeft.REASON_DISCONNECTED),
        )
    ]


def test_malformed_input_before_join_is_counted_too(make_world: Callable[..., World]) -> None:
    world = make_world(malformed_input_tolerance=1)
    session = world.open()
    world.signaling(session, delimited(1))
    assert errors(world, session) == [("ERROR_CODE_MALFORMED", False, 1)]
    world.signaling(session, delimited(2))
    assert errors(world, session) == [("ERROR_CODE_MALFORMED", True, 2)]
    assert session in world.closed


def test_bad_publish_requests_are_malformed(world: World) -> None:
    alice, _ = world.join("alice")
    for publish in (
        pb.PublishTrack(kind=pb.TRACK_KIND_UNSPECIFIED, codec="opus"),
        pb.PublishTrack(kind=AUDIO, codec="x" * 65),
        pb.PublishTrack(kind=VIDEO, codec="vp8", label="y" * 65),
    ):
        reply = world.request(alice, pb.ClientMessage(publish=publish))
        assert (reply.error.code, reply.error.fatal) == (pb.ERROR_CODE_MALFORMED, False)
    assert world.core.dump()["meetings"]["m1"]["tracks"] == 0


def test_an_oversize_signaling_message_closes_at_once(make_world: Callable[..., World]) -> None:
    world = make_world(max_signaling_message_bytes=1000)
    alice, _ = world.join("alice")
    world.signaling(alice, encode_varint(1001))
    assert errors(world, alice) == [("ERROR_CODE_MALFORMED", True, 0)]
    assert world.closed[alice].code == pb.ERROR_CODE_MALFORMED
    assert world.core.dump()["meetings"] == {}


def test_a_message_at_the_size_limit_is_fine(make_world: Callable[..., World]) -> None:
    world = make_world(max_signaling_message_bytes=1000)
    alice, _ = world.join("alice")
    body = pb.ClientMessage(request_id=1, join=pb.Join(token="z" * 992))
    assert len(body.SerializeToString()) == 1000
    world.signaling(alice, encode_delimited(body))
    assert errors(world, alice) == [("ERROR_CODE_ALREADY_JOINED", False, 1)]


# --- bad frames --------------------------------------------------------------------------------------


@dataclass
class Scene:
    world: World
    alice: int
    bob: int
    audio: int
    """alice's audio track, bob subscribes."""
    video: int
    """alice's video track, bob subscribes."""
    bobs: int
    """bob's audio track."""


@pytest.fixture
def scene(make_world: Callable[..., World]) -> Scene:
    """alice publishes audio and video, bob subscribes to both; a tolerance of 100 so nothing closes."""
    world = make_world(malformed_input_tolerance=100, max_frame_payload_bytes=1000)
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    audio = world.publish(alice, AUDIO)
    video = world.publish(alice, VIDEO)
    bobs = world.publish(bob, AUDIO)
    world.subscribe(bob, audio)
    world.subscribe(bob, video)
    world.take_all()
    return Scene(world, alice, bob, audio, video, bobs)


def test_bad_datagrams_are_refused_and_dropped(scene: Scene) -> None:
    world, alice, audio, video, bobs = scene.world, scene.alice, scene.audio, scene.video, scene.bobs
    good = world.audio_frame(audio, 1)
    bad = [
        good[:20],  # truncated header
        good[:-1],  # short payload
        good + b"x",  # trailing bytes
        b"\x02" + good[1:],  # unknown version
        good[:1] + b"\x80" + good[2:],  # reserved flag
        encode_frame(track_id=audio, group=0, object_seq=1, capture_us=0, payload=bytes(1001)),  # too big
        world.audio_frame(video, 1),  # a video track in a datagram
        world.audio_frame(bobs, 1),  # someone else's track
        world.audio_frame(77, 1),  # no such track
    ]
    for data in bad:
        [action] = world.datagram(alice, data)
        assert isinstance(action, SendSignaling)
        assert action.session == alice
    assert errors(world, alice) == [("ERROR_CODE_BAD_FRAME", False, 0)] * len(bad)
    assert world.datagrams == {}
    big = encode_frame(track_id=audio, group=0, object_seq=1, capture_us=0, payload=bytes(1000))
    world.datagram(alice, big)
    assert errors(world, alice) == []
    assert alice not in world.closed


def test_media_before_join_is_ignored(world: World) -> None:
    session = world.open()
    assert world.datagram(session, world.audio_frame(1, 1)) == []
    assert world.stream(session, 2, world.video_frame(1, 0, 0), end=True) == []
    assert world.take(session) == []


BAD_STREAMS: dict[str, Callable[[World, int, int, int], bytes]] = {
    "starts without a keyframe": lambda w, a, v, b: w.video_frame(v, 0, 1),
    "keyframe that is not object 0": lambda w, a, v, b: encode_frame(
        track_id=v, group=0, object_seq=3, capture_us=0, payload=b"k", keyframe=True
    ),
    "audio track": lambda w, a, v, b: w.video_frame(a, 0, 0),
    "someone else's track": lambda w, a, v, b: w.video_frame(b, 0, 0),
    "unknown track": lambda w, a, v, b: w.video_frame(99, 0, 0),
    "second group on the stream": lambda w, a, v, b: w.video_frame(v, 0, 0) + w.video_frame(v, 1, 1),
    "second track on the stream": lambda w, a, v, b: w.video_frame(v, 0, 0) + w.video_frame(a, 0, 1),
    "oversize frame": lambda w, a, v, b: w.video_frame(v, 0, 0, payload=bytes(1001)),
    "garbage header": lambda w, a, v, b: w.video_frame(v, 0, 0) + b"\x09" * 40,
}


@pytest.mark.parametrize("case", BAD_STREAMS)
def test_a_bad_video_stream_is_refused_and_the_rest_of_it_dropped(scene: Scene, case: str) -> None:
    world, alice, audio, video, bobs = scene.world, scene.alice, scene.audio, scene.video, scene.bobs
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, BAD_STREAMS[case](world, audio, video, bobs))
    assert errors(world, alice) == [("ERROR_CODE_BAD_FRAME", False, 0)]
    world.stream(alice, stream_id, world.video_frame(video, 0, 2), end=True)
    assert errors(world, alice) == []
    assert all(stream.ended for stream in world.streams[scene.bob])
    good = [world.video_frame(video, 1, seq) for seq in range(2)]
    other = world.new_stream_id(alice)
    world.stream(alice, other, b"".join(good), end=True)
    assert world.video_frames(scene.bob, video)[-1] == good


def test_a_stream_ending_inside_a_frame_is_a_bad_frame(scene: Scene) -> None:
    world, alice, bob, video = scene.world, scene.alice, scene.bob, scene.video
    stream_id = world.new_stream_id(alice)
    keyframe = world.video_frame(video, 0, 0)
    world.stream(alice, stream_id, keyframe + world.video_frame(video, 0, 1)[:-1], end=True)
    assert errors(world, alice) == [("ERROR_CODE_BAD_FRAME", False, 0)]
    assert world.video_frames(bob, video) == [[keyframe]]
    assert world.streams[bob][0].ended


def test_an_empty_stream_is_nothing(scene: Scene) -> None:
    world, alice = scene.world, scene.alice
    assert world.stream(alice, world.new_stream_id(alice), b"", end=True) == []
    assert world.take(alice) == []


def test_bad_frames_count_towards_the_tolerance(make_world: Callable[..., World]) -> None:
    world = make_world(malformed_input_tolerance=2)
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    video = world.publish(alice, VIDEO)
    world.subscribe(bob, video)
    stream_id = world.new_stream_id(alice)
    world.stream(alice, stream_id, world.video_frame(video, 0, 0))
    world.take_all()
    world.datagram(alice, b"junk")
    world.signaling(alice, delimited(3))
    assert alice not in world.closed
    world.stream(alice, world.new_stream_id(alice), world.video_frame(video, 1, 1))
    assert errors(world, alice) == [
        ("ERROR_CODE_BAD_FRAME", False, 0),
        ("ERROR_CODE_MALFORMED", False, 3),
        ("ERROR_CODE_BAD_FRAME", True, 0),
    ]
    assert world.closed[alice].code == pb.ERROR_CODE_BAD_FRAME
    assert world.streams[bob][0].ended
    assert [body for body, _ in world.events(bob)] == ["track_unpublished", "participant_left"]
    assert world.stream(alice, stream_id, world.video_frame(video, 0, 1)) == []
