"""End-to-end key messages through the worker: relayed opaque to the named members of the same meeting,
refused for unknown recipients, rate-capped per session; and the `e2ee` flag of a Join reaches the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import given, settings
from hypothesis import strategies as st

from darktower.proto import signaling_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import World


def key_message(payload: bytes, *to: str) -> pb.ClientMessage:
    return pb.ClientMessage(key_message=pb.KeyMessage(to_participant_ids=list(to), payload=payload))


def received(world: World, session: int) -> list[tuple[str, bytes]]:
    return [
        (value.from_participant_id, value.payload)
        for body, value in world.events(session)
        if body == "key_message_received"
    ]


def test_a_key_message_reaches_only_the_named_participants(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    world.take_all()
    reply = world.request(alice, key_message(b"\x00wrapped", "bob"))
    assert reply.WhichOneof("body") == "ack"
    assert received(world, bob) == [("alice", b"\x00wrapped")]
    assert received(world, carol) == []
    assert received(world, alice) == []


def test_a_key_message_without_recipients_goes_to_everyone_else(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    carol, _ = world.join("carol")
    world.join("dave", meeting_id="m2")
    world.take_all()
    assert world.request(bob, key_message(b"identity")).WhichOneof("body") == "ack"
    assert received(world, alice) == [("bob", b"identity")]
    assert received(world, carol) == [("bob", b"identity")]
    assert received(world, bob) == []


def test_unknown_recipients_are_refused_and_the_known_ones_still_served(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.join("dave", meeting_id="m2")
    world.take_all()
    reply = world.request(alice, key_message(b"k", "bob", "dave", "alice", "bob"))
    assert reply.error.code == pb.ERROR_CODE_UNKNOWN_PARTICIPANT
    assert not reply.error.fatal
    assert "'dave'" in reply.error.message
    assert "'alice'" in reply.error.message
    assert received(world, bob) == [("alice", b"k")]
    assert alice not in world.closed


def test_a_participant_that_left_is_unknown(world: World) -> None:
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.disconnect(bob)
    reply = world.request(alice, key_message(b"k", "bob"))
    assert reply.error.code == pb.ERROR_CODE_UNKNOWN_PARTICIPANT


def test_the_key_message_rate_is_capped_without_closing_the_session(
    make_world: Callable[..., World],
) -> None:
    world = make_world(max_participants_per_meeting=4, malformed_input_tolerance=2)
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.take_all()
    for _ in range(16):  # the burst: four times the meeting's size
        assert world.request(alice, key_message(b"k", "bob")).WhichOneof("body") == "ack"
    for _ in range(5):  # well past the malformed-input tolerance: refused, never counted
        refused = world.request(alice, key_message(b"k", "bob"))
        assert refused.error.code == pb.ERROR_CODE_RATE_LIMITED
        assert not refused.error.fatal
    assert len(received(world, bob)) == 16
    world.advance(0.5)  # refills 4
    for _ in range(4):
        assert world.request(alice, key_message(b"k", "bob")).WhichOneof("body") == "ack"
    assert world.request(alice, key_message(b"k", "bob")).error.code == pb.ERROR_CODE_RATE_LIMITED
    assert alice not in world.closed
    assert len(received(world, bob)) == 4  # the refills (the first 16 were taken above)


def test_a_key_message_before_joining_closes_the_session(world: World) -> None:
    session = world.open()
    reply = world.request(session, key_message(b"k"))
    assert reply.error.code == pb.ERROR_CODE_UNAUTHENTICATED
    assert reply.error.fatal


def test_the_e2ee_flag_of_a_join_is_shown_to_the_others(world: World) -> None:
    alice, _ = world.join("alice")
    session = world.open()
    token = world.token("m1", "bob")
    reply = world.request(session, pb.ClientMessage(join=pb.Join(token=token, e2ee=True)))
    assert [p.e2ee for p in reply.join_response.roster] == [False]
    [(body, joined)] = world.events(alice)
    assert body == "participant_joined"
    assert joined.participant.e2ee
    _, carol = world.join("carol")
    assert {p.participant_id: p.e2ee for p in carol.roster} == {"alice": False, "bob": True}


@settings(max_examples=30, deadline=None)
@given(payload=st.binary(max_size=2048))
def test_payloads_are_relayed_byte_exact(make_world: Callable[..., World], payload: bytes) -> None:
    world = make_world()
    alice, _ = world.join("alice")
    bob, _ = world.join("bob")
    world.take_all()
    assert world.request(alice, key_message(payload, "bob")).WhichOneof("body") == "ack"
    assert received(world, bob) == [("alice", payload)]
