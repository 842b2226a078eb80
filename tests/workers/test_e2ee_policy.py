"""The E2EE-required policy (docs/E2EE.md, Policy): a grant for an E2EE-required meeting admits only a Join
that announces e2ee; a plaintext Join is closed with a fatal ERROR_CODE_E2EE_REQUIRED and never joins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from darktower.proto import signaling_pb2 as pb

if TYPE_CHECKING:
    from conftest import World


def required_token(world: World, participant_id: str, *, e2ee_required: bool = True) -> str:
    token, _ = world.signer.sign(
        meeting_id="m1",
        participant_id=participant_id,
        display_name=participant_id.title(),
        can_publish=True,
        can_subscribe=True,
        now=world.now_us / 1_000_000,
        e2ee_required=e2ee_required,
    )
    return token


def test_a_plaintext_join_to_an_e2ee_required_meeting_is_refused(world: World) -> None:
    alice, _ = world.join("alice")
    world.take_all()
    session = world.open()
    reply = world.request(session, pb.ClientMessage(join=pb.Join(token=required_token(world, "bob"))))
    assert reply.error.code == pb.ERROR_CODE_E2EE_REQUIRED
    assert reply.error.fatal
    assert "'m1' requires end-to-end encrypted media" in reply.error.message
    assert world.closed[session].code == pb.ERROR_CODE_E2EE_REQUIRED
    assert world.events(alice) == []  # bob never joined, so nobody saw him come or go


def test_an_encrypting_join_to_an_e2ee_required_meeting_is_admitted(world: World) -> None:
    session = world.open()
    join = pb.Join(token=required_token(world, "bob"), e2ee=True)
    reply = world.request(session, pb.ClientMessage(join=join))
    assert reply.join_response.participant_id == "bob"
    assert session not in world.closed


def test_a_plaintext_join_is_admitted_where_e2ee_is_not_required(world: World) -> None:
    session = world.open()
    join = pb.Join(token=required_token(world, "bob", e2ee_required=False))
    reply = world.request(session, pb.ClientMessage(join=join))
    assert reply.join_response.participant_id == "bob"
