"""Roles and host actions in the sans-I/O worker: viewers, mute, remove, lock, end, the meeting's own
participant limit, the join/leave journal, and the same actions coming from the control plane."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.core.config import LimitsConfig
from darktower.core.tokens import JoinGrant, Role
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import encode_frame
from darktower.workers.actions import SendSignaling
from darktower.workers.admin_state import ENDED_REMEMBERED_S, Oversight, Sanctions
from darktower.workers.cluster_media import MediaRouter
from darktower.workers.cluster_records import Catalog, MemberEntry, TrackEntry, cluster_session
from darktower.workers.errors import RequestRefusedError
from darktower.workers.meeting import ROLE_OF, Meeting

if TYPE_CHECKING:
    from conftest import World

AUDIO = pb.TRACK_KIND_AUDIO
VIDEO = pb.TRACK_KIND_VIDEO
MUTE, REMOVE, LOCK, UNLOCK, END = (
    pb.HostAction.KIND_MUTE,
    pb.HostAction.KIND_REMOVE,
    pb.HostAction.KIND_LOCK,
    pb.HostAction.KIND_UNLOCK,
    pb.HostAction.KIND_END,
)


def token(
    world: World, participant_id: str, role: Role = Role.PARTICIPANT, *, max_participants: int = 0
) -> str:
    signed, _ = world.signer.sign(
        meeting_id="m1",
        participant_id=participant_id,
        display_name=participant_id.title(),
        can_publish=True,
        can_subscribe=True,
        now=world.now_us / 1_000_000,
        role=role,
        max_participants=max_participants,
    )
    return signed


def try_join(world: World, signed: str) -> tuple[int, pb.ServerMessage]:
    session = world.open("m1")
    return session, world.request(session, pb.ClientMessage(join=pb.Join(token=signed)))


def join(world: World, participant_id: str, role: Role = Role.PARTICIPANT) -> int:
    session, reply = try_join(world, token(world, participant_id, role))
    assert reply.WhichOneof("body") == "join_response", reply
    return session


def act(world: World, session: int, kind: pb.HostAction.Kind, target: str = "") -> pb.ServerMessage:
    return world.request(
        session, pb.ClientMessage(host_action=pb.HostAction(kind=kind, participant_id=target))
    )


def error(reply: pb.ServerMessage) -> tuple[str, bool]:
    assert reply.WhichOneof("body") == "error", reply
    return pb.ErrorCode.Name(reply.error.code), reply.error.fatal


def closed_with(world: World, session: int) -> str:
    return pb.ErrorCode.Name(world.closed[session].code)


# --- roles -------------------------------------------------------------------------------------------


def test_roles_are_shown_to_the_others_and_a_viewer_cannot_publish(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    viewer, reply = try_join(world, token(world, "vic", Role.VIEWER))
    [(body, joined)] = world.events(host)
    assert body == "participant_joined"
    assert (joined.participant.role, joined.participant.can_publish) == (pb.ROLE_VIEWER, False)
    assert [p.role for p in reply.join_response.roster] == [pb.ROLE_HOST]
    refused = world.request(viewer, pb.ClientMessage(publish=pb.PublishTrack(kind=AUDIO, codec="opus")))
    assert error(refused) == ("ERROR_CODE_FORBIDDEN", False)
    assert refused.error.message == "a viewer may not publish"
    assert world.subscribe(viewer, world.publish(host, AUDIO)).WhichOneof("body") == "ack"


def test_a_participant_is_refused_every_host_action_and_stays(world: World) -> None:
    join(world, "hana", Role.HOST)
    bob = join(world, "bob")
    world.take_all()
    for kind in (MUTE, REMOVE, LOCK, UNLOCK, END):
        assert error(act(world, bob, kind, "hana")) == ("ERROR_CODE_PERMISSION_DENIED", False)
    assert world.closed == {}
    assert world.request(bob, pb.ClientMessage(ping=pb.Ping())).WhichOneof("body") == "pong"


def test_a_malformed_host_action_is_malformed_input(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    assert error(act(world, host, 99)) == ("ERROR_CODE_MALFORMED", False)  # type: ignore[arg-type]
    assert error(act(world, host, pb.HostAction.KIND_UNSPECIFIED)) == ("ERROR_CODE_MALFORMED", False)
    assert error(act(world, host, MUTE, "x" * 129)) == ("ERROR_CODE_MALFORMED", False)
    reply = act(world, host, REMOVE, "nobody")
    assert error(reply) == ("ERROR_CODE_UNKNOWN_PARTICIPANT", False)
    assert reply.error.message == "no participant 'nobody' in this meeting"


# --- mute --------------------------------------------------------------------------------------------


def test_mute_unpublishes_the_targets_audio_only_and_it_may_publish_again(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    bob = join(world, "bob")
    audio, video = world.publish(bob, AUDIO), world.publish(bob, VIDEO)
    world.subscribe(host, audio)
    world.take_all()

    assert act(world, host, MUTE, "bob").WhichOneof("body") == "ack"
    [(body, muted)] = world.events(bob)
    assert body == "muted"
    assert (muted.by_participant_id, list(muted.track_ids)) == ("hana", [audio])
    assert world.events(host) == [("track_unpublished", pb.TrackUnpublished(track_id=audio))]
    assert set(world.core.snapshot()[0]["tracks"][0].items()) >= {("track_id", video), ("kind", "video")}

    for seq in range(world.limits.malformed_input_tolerance + 2):  # sent before bob heard of the mute
        world.datagram(bob, world.audio_frame(audio, seq))
    assert world.datagrams[host] == []
    assert world.take(bob) == []
    assert world.closed == {}
    again = world.publish(bob, AUDIO)
    world.subscribe(host, again)
    world.datagram(bob, world.audio_frame(again, 2))
    assert world.datagrams[host] == [world.audio_frame(again, 2)]


# --- remove ------------------------------------------------------------------------------------------


def test_remove_closes_the_target_and_its_token_cannot_join_again(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    bob_token = token(world, "bob")
    bob, _ = try_join(world, bob_token)
    world.take_all()

    assert act(world, host, REMOVE, "bob").WhichOneof("body") == "ack"
    assert closed_with(world, bob) == "ERROR_CODE_REMOVED"
    [notice] = world.take(bob)
    assert error(notice) == ("ERROR_CODE_REMOVED", True)
    [(body, left)] = world.events(host)
    assert (body, left.participant_id, left.reason) == (
        "participant_left",
        "bob",
        pb.ParticipantLeft.REASON_REMOVED,
    )

    again, reply = try_join(world, bob_token)
    assert error(reply) == ("ERROR_CODE_REMOVED", True)
    assert closed_with(world, again) == "ERROR_CODE_REMOVED"


def test_a_removal_outlives_the_meeting_object(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    bob_token = token(world, "bob")
    try_join(world, bob_token)
    act(world, host, REMOVE, "bob")
    world.disconnect(host)
    assert world.core.snapshot() == []
    _, reply = try_join(world, bob_token)
    assert error(reply) == ("ERROR_CODE_REMOVED", True)


# --- lock ---------------------------------------------------------------------------------------------


def test_lock_refuses_newcomers_but_not_hosts_or_members_reconnecting(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    bob_token = token(world, "bob")
    try_join(world, bob_token)
    assert act(world, host, LOCK).WhichOneof("body") == "ack"
    assert world.core.snapshot()[0]["locked"] is True

    carol, reply = try_join(world, token(world, "carol"))
    assert error(reply) == ("ERROR_CODE_MEETING_LOCKED", True)
    assert closed_with(world, carol) == "ERROR_CODE_MEETING_LOCKED"
    _, reply = try_join(world, bob_token)
    assert reply.WhichOneof("body") == "join_response"
    join(world, "cohost", Role.HOST)

    assert act(world, host, UNLOCK).WhichOneof("body") == "ack"
    join(world, "carol")


# --- end ----------------------------------------------------------------------------------------------


def test_end_closes_everyone_with_ended_after_acking_the_host(world: World) -> None:
    host = join(world, "hana", Role.HOST)
    bob = join(world, "bob")
    world.publish(bob, VIDEO)
    world.take_all()
    assert act(world, host, END).WhichOneof("body") == "ack"
    assert {closed_with(world, s) for s in (host, bob)} == {"ERROR_CODE_ENDED"}
    assert [error(m) for m in world.take(bob)] == [("ERROR_CODE_ENDED", True)]
    assert world.core.snapshot() == []

    late, reply = try_join(world, token(world, "late", Role.HOST))
    assert error(reply) == ("ERROR_CODE_ENDED", True)
    assert reply.error.message == "meeting 'm1' has ended"
    assert closed_with(world, late) == "ERROR_CODE_ENDED"


# --- the meeting's own limit ------------------------------------------------------------------------


def test_the_grant_limit_applies_when_lower_than_the_workers(world: World) -> None:
    for name in ("a", "b"):
        _, reply = try_join(world, token(world, name, max_participants=2))
        assert reply.WhichOneof("body") == "join_response"
    _, reply = try_join(world, token(world, "c", max_participants=2))
    assert error(reply) == ("ERROR_CODE_MEETING_FULL", True)
    assert reply.error.message == "meeting is full (2 participants)"


# --- from the control plane --------------------------------------------------------------------------


def test_the_control_plane_acts_without_being_a_member(world: World) -> None:
    bob = join(world, "bob")
    world.run(world.core.host_action("m1", MUTE, "bob", world.now_us))
    [(body, muted)] = world.events(bob)
    assert (body, muted.by_participant_id) == ("muted", "")
    world.run(world.core.host_action("m1", REMOVE, "bob", world.now_us))
    assert closed_with(world, bob) == "ERROR_CODE_REMOVED"
    with pytest.raises(RequestRefusedError) as refused:
        world.core.host_action("m1", REMOVE, "bob", world.now_us)
    assert refused.value.code == pb.ERROR_CODE_UNKNOWN_PARTICIPANT


def test_ending_a_meeting_nobody_is_in_refuses_its_later_joins(world: World) -> None:
    assert world.core.host_action("m1", END, "", world.now_us) == []
    _, reply = try_join(world, token(world, "bob", Role.HOST))
    assert error(reply) == ("ERROR_CODE_ENDED", True)


# --- journal and sanctions ---------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def joined(self, meeting_id: str, grant: JoinGrant) -> None:
        self.events.append(("joined", meeting_id, f"{grant.participant_id}:{grant.role.value}"))

    def left(self, meeting_id: str, participant_id: str, reason: str) -> None:
        self.events.append(("left", meeting_id, f"{participant_id}:{reason}"))


def test_the_journal_hears_every_join_and_leave_with_its_reason(world: World) -> None:
    recorder = Recorder()
    world.core.oversight.journal = recorder
    host = join(world, "hana", Role.HOST)
    bob = join(world, "bob")
    join(world, "carol")
    try_join(world, token(world, "bob"))
    act(world, host, REMOVE, "carol")
    world.disconnect(bob)
    act(world, host, END)
    assert recorder.events == [
        ("joined", "m1", "hana:host"),
        ("joined", "m1", "bob:participant"),
        ("joined", "m1", "carol:participant"),
        ("left", "m1", "bob:replaced"),
        ("joined", "m1", "bob:participant"),
        ("left", "m1", "carol:removed"),
        ("left", "m1", "hana:ended"),
        ("left", "m1", "bob:ended"),
    ]


def test_sanctions_expire_and_are_swept() -> None:
    sanctions = Sanctions()
    sanctions.remove("m", "p", until_s=100, now_s=0)
    sanctions.end("e", now_s=0)
    with pytest.raises(RequestRefusedError):
        sanctions.check_join("m", "p", now_s=100)
    sanctions.check_join("m", "p", now_s=101)
    sanctions.check_join("m", "other", now_s=0)
    assert sanctions.ended("e", now_s=ENDED_REMEMBERED_S)
    assert not sanctions.ended("e", now_s=ENDED_REMEMBERED_S + 1)
    for n in range(300):
        sanctions.remove("m", str(n), until_s=ENDED_REMEMBERED_S + 10 + n, now_s=ENDED_REMEMBERED_S + 10)
    assert len(sanctions) == 300


def test_a_removed_member_without_a_known_expiry_is_kept_out_the_longest() -> None:
    """A member an owner rebuilt after a restart (`ClusterCore`) has no grant expiry to go by."""
    oversight = Oversight()
    meeting = Meeting("m", LimitsConfig(), lambda _meeting: None, oversight=oversight)
    rebuilt = JoinGrant(
        meeting_id="m",
        participant_id="p",
        display_name="P",
        can_publish=True,
        can_subscribe=True,
        expires_at=0,
        token_id="",
        role=ROLE_OF[pb.ROLE_HOST],
    )
    member, _ = meeting.join(1, 1, rebuilt)
    assert member.role is Role.HOST
    meeting.host_action(None, REMOVE, "p", now_us=1_000_000)
    with pytest.raises(RequestRefusedError):
        oversight.sanctions.check_join("m", "p", now_s=ENDED_REMEMBERED_S)
    oversight.sanctions.check_join("m", "p", now_s=ENDED_REMEMBERED_S + 2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actions=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(-(2**31), 2**31 - 1),
            st.sampled_from(["bob", "hana", "", "nobody"]) | st.text(max_size=140),
        ),
        max_size=6,
    )
)
def test_any_host_action_gets_one_reply_and_leaves_a_consistent_meeting(
    world: World, actions: list[tuple[bool, int, str]]
) -> None:
    meeting = f"m{world.now_us}"  # the world lives across examples: a fresh meeting for each
    world.advance(1)
    sessions = {}
    for name, role in (("hana", Role.HOST), ("bob", Role.PARTICIPANT)):
        signed, _ = world.signer.sign(
            meeting_id=meeting,
            participant_id=name,
            display_name=name,
            can_publish=True,
            can_subscribe=True,
            now=world.now_us / 1_000_000,
            role=role,
        )
        sessions[name] = world.open(meeting)
        world.request(sessions[name], pb.ClientMessage(join=pb.Join(token=signed)))
    for from_host, kind, target in actions:
        session = sessions["hana" if from_host else "bob"]
        if session in world.closed:
            continue
        reply = world.request(
            session,
            pb.ClientMessage(host_action=pb.HostAction(kind=kind, participant_id=target)),  # type: ignore[arg-type]
        )
        assert reply.WhichOneof("body") in {"ack", "error"}
    live = {m["meeting_id"]: m for m in world.core.snapshot()}
    members = {p["participant_id"] for p in live[meeting]["participants"]} if meeting in live else set()
    assert members == {name for name, s in sessions.items() if s not in world.closed}


def test_a_cluster_edge_drops_audio_of_an_unpublished_track_quietly() -> None:
    """The edge's media router applies the same rule as `Session` once the owner's catalog drops the
    track (a host's mute): what the client sent before it heard is not malformed input."""
    limits = LimitsConfig()
    router = MediaRouter(0, 1, limits)
    publisher, listener = cluster_session(0, 1, 1), cluster_session(0, 1, 2)
    router.session_opened(1, publisher, "m")
    router.session_opened(2, listener, "m")
    members = tuple(
        MemberEntry(s, pb.Participant(participant_id=str(s)).SerializeToString())
        for s in (publisher, listener)
    )
    audio = TrackEntry(7, publisher, pb.TRACK_KIND_AUDIO, "opus", "", (listener,))
    router.apply_catalog(Catalog(0, "m", 8, members, (audio,)))
    frame = encode_frame(track_id=7, group=0, object_seq=1, capture_us=0, payload=b"a")
    assert [type(a).__name__ for a in router.datagram_received(1, frame)] == ["SendDatagram"]

    router.apply_catalog(Catalog(0, "m", 8, members, ()))
    for _ in range(limits.malformed_input_tolerance + 2):
        assert router.datagram_received(1, frame) == []
    unknown = encode_frame(track_id=9, group=0, object_seq=1, capture_us=0, payload=b"a")
    [refusal] = router.datagram_received(1, unknown)
    assert isinstance(refusal, SendSignaling)
