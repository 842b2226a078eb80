"""`WorkerCore` as its adapter sees it: the session registry, `dump()`, and that nothing one session sends
can disturb another session or escape as an exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import MAX_U32, encode_frame
from darktower.proto.signaling import encode_delimited
from darktower.workers.errors import WorkerError

if TYPE_CHECKING:
    from conftest import World

AUDIO = pb.TRACK_KIND_AUDIO
VIDEO = pb.TRACK_KIND_VIDEO


def test_dump_lists_meetings_participants_and_sessions(world: World) -> None:
    assert world.core.dump() == {"meetings": {}, "sessions": 0}
    alice, _ = world.join("alice")
    world.publish(alice, AUDIO)
    world.join("bob")
    world.join("carol", meeting_id="m2")
    world.open("m3")
    assert world.core.dump() == {
        "meetings": {
            "m1": {"participants": ["alice", "bob"], "tracks": 1},
            "m2": {"participants": ["carol"], "tracks": 0},
        },
        "sessions": 4,
    }


def test_a_session_id_cannot_be_opened_twice(world: World) -> None:
    session = world.open()
    with pytest.raises(WorkerError):
        world.core.session_opened(session, "m1", world.now_us)


def test_events_of_unknown_or_closed_sessions_are_ignored(world: World) -> None:
    core, now = world.core, world.now_us
    assert core.signaling_received(42, b"\x00", now) == []
    assert core.datagram_received(42, b"\x00", now) == []
    assert core.media_stream_received(42, 2, b"\x00", True, now) == []
    assert core.media_stream_reset(42, 2, now) == []
    assert core.subscriber_lagging(42, 1, now) == []
    assert core.session_closed(42, now) == []
    alice, _ = world.join("alice")
    world.disconnect(alice)
    assert world.disconnect(alice) == []
    assert core.dump() == {"meetings": {}, "sessions": 0}


def test_a_session_closed_before_joining_leaves_no_trace(world: World) -> None:
    session = world.open()
    world.signaling(session, encode_delimited(pb.ClientMessage(request_id=1, join=pb.Join(token=""))))
    assert world.disconnect(session) == []
    assert world.core.dump() == {"meetings": {}, "sessions": 0}


# --- fuzzing -----------------------------------------------------------------------------------------

TRACK_IDS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 99, MAX_U32])
"""Ids of the scene's tracks (1-6), and some that are not."""

client_messages = st.one_of(
    st.builds(lambda t: pb.ClientMessage(join=pb.Join(token=t)), st.text(max_size=40)),
    st.builds(
        lambda k, c, lbl: pb.ClientMessage(publish=pb.PublishTrack(kind=k, codec=c, label=lbl)),
        st.integers(0, 4),
        st.text(max_size=70),
        st.text(max_size=70),
    ),
    st.builds(lambda t: pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=t)), TRACK_IDS),
    st.builds(lambda t: pb.ClientMessage(subscribe=pb.Subscribe(track_id=t)), TRACK_IDS),
    st.builds(lambda t: pb.ClientMessage(unsubscribe=pb.Unsubscribe(track_id=t)), TRACK_IDS),
    st.builds(lambda t: pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=t)), TRACK_IDS),
    st.builds(lambda t: pb.ClientMessage(ping=pb.Ping(client_time_us=t)), st.integers(0, 2**64 - 1)),
    st.just(pb.ClientMessage(leave=pb.Leave())),
    st.just(pb.ClientMessage()),
)


@st.composite
def signaling_bytes(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or encoded messages (with any request id) possibly cut or corrupted."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    message = draw(client_messages)
    message.request_id = draw(st.sampled_from([0, 1, 2, MAX_U32]))
    data = encode_delimited(message)
    cut = draw(st.integers(0, len(data)))
    return draw(st.sampled_from([data, data[:cut], data[cut:], data + draw(st.binary(max_size=10))]))


frames = st.builds(
    lambda t, g, s, k, p: encode_frame(
        track_id=t, group=g, object_seq=s, capture_us=0, payload=p, keyframe=k
    ),
    TRACK_IDS,
    st.integers(0, 3),
    st.integers(0, 3),
    st.booleans(),
    st.binary(max_size=40),
)
media_bytes = st.one_of(st.binary(max_size=120), frames, st.lists(frames, max_size=4).map(b"".join))

inputs = st.lists(
    st.one_of(
        st.tuples(st.just("signaling"), signaling_bytes()),
        st.tuples(st.just("datagram"), media_bytes),
        st.tuples(st.just("stream"), st.sampled_from([2, 6, 10]), media_bytes, st.booleans()),
        st.tuples(st.just("reset"), st.sampled_from([2, 6, 10])),
        st.tuples(st.just("lagging"), TRACK_IDS),
    ),
    max_size=12,
)


def snapshot(world: World, bystanders: dict[int, str]) -> Any:
    """What the bystanders' meeting state is: their membership, tracks and mutual subscriptions."""
    meeting = world.core._meetings["m1"]
    members = {pid: m for pid, m in meeting.members.items() if pid in bystanders.values()}
    return {
        pid: (
            member.session,
            member.active,
            {tid: sorted(set(t.subscribers) & set(bystanders)) for tid, t in member.published.items()},
            sorted(tid for tid, t in member.subscriptions.items() if t.publisher.participant_id in members),
        )
        for pid, member in members.items()
    }


@settings(max_examples=150, deadline=None)
@given(joined=st.booleans(), steps=inputs)
def test_nothing_a_session_sends_disturbs_the_others(
    make_world: Callable[..., World], joined: bool, steps: list[tuple[Any, ...]]
) -> None:
    world = make_world(malformed_input_tolerance=3)
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    alices_audio, alices_video = world.publish(alice, AUDIO), world.publish(alice, VIDEO)
    world.publish(bob, AUDIO)
    bobs_video = world.publish(bob, VIDEO)
    world.subscribe(bob, alices_audio)
    world.subscribe(bob, alices_video)
    world.subscribe(alice, bobs_video)
    if joined:
        eve, _ = world.join("eve")
        eves = [world.publish(eve, AUDIO), world.publish(eve, VIDEO)]
        for track in eves:
            world.subscribe(alice, track)
        world.subscribe(eve, alices_audio)
    else:
        eve = world.open("m1")
    bystanders = {alice: "alice", bob: "bob"}
    before = snapshot(world, bystanders)
    world.take_all()

    for step in steps:
        match step:
            case ("signaling", data):
                world.signaling(eve, data)
            case ("datagram", data):
                world.datagram(eve, data)
            case ("stream", stream_id, data, end):
                world.stream(eve, stream_id, data, end=end)
            case ("reset", stream_id):
                world.reset(eve, stream_id)
            case ("lagging", track_id):
                world.lagging(eve, track_id)

    assert snapshot(world, bystanders) == before
    assert alice not in world.closed
    assert bob not in world.closed
    for session in bystanders:
        for message in world.take(session):
            body = message.WhichOneof("body")
            assert body in {"track_published", "track_unpublished", "participant_left", "keyframe_request"}, (
                message
            )
            if body == "participant_left":
                assert message.participant_left.participant_id == "eve"
    frame = world.audio_frame(alices_audio, 1)
    world.datagram(alice, frame)
    assert world.datagrams[bob][-1] == frame
    world.disconnect(eve)
    assert snapshot(world, bystanders) == before
