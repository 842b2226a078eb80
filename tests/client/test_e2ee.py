"""The key manager (darktower.client.e2ee) driven directly, several participants through a relay, with
explicit times: who can open whose frames after joins, leaves, merged rotations, retirement and
reconnects, and every refusal of a frame or key message counted by kind without changing state."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darktower.client.e2ee import (
    RETIRE_AFTER_US,
    ROTATION_DELAY_US,
    E2eeError,
    FrameRefusal,
    KeyAction,
    KeyManager,
    Opened,
    Refused,
    SendKeyMessage,
)
from darktower.client.keymessages import (
    HELLO_SIZE,
    MEDIA_KEY_SIZE,
    Hello,
    Identity,
    KeyMessageError,
    KeyMessageRefusal,
    SealedMediaKey,
    decode_key_message,
    encode_hello,
)
from darktower.proto.frame import HEADER_SIZE, encode_frame

SWITCH = ROTATION_DELAY_US


def header(track_id: int = 1, object_seq: int = 0) -> bytes:
    return encode_frame(track_id=track_id, group=0, object_seq=object_seq, capture_us=1, payload=b"")[
        :HEADER_SIZE
    ]


class Meeting:
    """Managers that relay every key message to its recipients in order, as the worker does."""

    def __init__(self) -> None:
        self.managers: dict[str, KeyManager] = {}
        self.now = 0

    def join(self, pid: str, *, e2ee: bool = True, manager: KeyManager | None = None) -> KeyManager:
        roster = [(other, True) for other in self.managers]
        manager = manager or KeyManager()
        self.managers[pid] = manager
        actions = manager.joined(pid, roster, self.now)
        for other, existing in self.managers.items():
            if other != pid:
                self.run(other, existing.participant_joined(pid, e2ee, self.now))
        self.run(pid, actions)
        return manager

    def leave(self, pid: str) -> KeyManager:
        manager = self.managers.pop(pid)
        for other, existing in list(self.managers.items()):
            self.run(other, existing.participant_left(pid, self.now))
        return manager

    def run(self, sender: str, actions: Iterable[KeyAction]) -> None:
        for action in actions:
            recipients = action.to or tuple(pid for pid in self.managers if pid != sender)
            for recipient in recipients:
                manager = self.managers.get(recipient)
                if manager is not None:
                    self.run(recipient, manager.receive(sender, action.payload, self.now))

    def advance(self, us: int) -> None:
        """Time passes for everyone; a client advances its manager with every frame it sends or gets."""
        self.now += us
        for manager in self.managers.values():
            manager.advance(self.now)

    def seal(self, pid: str, payload: bytes = b"media", object_seq: int = 0) -> tuple[bytes, bytes]:
        meta = header(object_seq=object_seq)
        return meta, self.managers[pid].seal(meta, payload, self.now)

    def open(
        self, receiver: KeyManager, sender: str, sealed: tuple[bytes, bytes], *, video: bool = False
    ) -> Opened | Refused:
        meta, payload = sealed
        return receiver.open(sender, payload, meta, self.now, video=video)


def refusal(result: Opened | Refused) -> FrameRefusal | None:
    return result.refusal if isinstance(result, Refused) else None


def test_two_participants_open_each_other_and_agree_on_the_safety_number() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    bob = meeting.join("bob")
    assert alice.safety_number("bob") == bob.safety_number("alice") is not None
    assert bob.proven_identity("alice") == alice.identity.public_key
    meeting.advance(SWITCH)
    assert meeting.open(bob, "alice", meeting.seal("alice", b"from alice")) == Opened(b"from alice", 1)
    assert meeting.open(alice, "bob", meeting.seal("bob", b"from bob")) == Opened(b"from bob", 0)
    assert alice.decrypted == bob.decrypted == 1


def test_a_newcomer_cannot_open_what_was_sent_before_it_joined() -> None:
    meeting = Meeting()
    meeting.join("alice")
    before = meeting.seal("alice")
    bob = meeting.join("bob")
    during = meeting.seal("alice")  # the rotation is pending: still the old key
    assert refusal(meeting.open(bob, "alice", before)) is FrameRefusal.UNKNOWN_KEY
    assert refusal(meeting.open(bob, "alice", during)) is FrameRefusal.UNKNOWN_KEY
    meeting.advance(SWITCH)
    assert isinstance(meeting.open(bob, "alice", meeting.seal("alice")), Opened)
    assert bob.refused_frames[FrameRefusal.UNKNOWN_KEY] == 2


def test_the_rotation_overlap_lets_existing_members_open_both_keys() -> None:
    meeting = Meeting()
    meeting.join("alice")
    bob = meeting.join("bob")
    meeting.advance(SWITCH)
    old = meeting.seal("alice", object_seq=1)
    meeting.join("carol")
    meeting.advance(SWITCH)
    new = meeting.seal("alice", object_seq=2)
    assert meeting.open(bob, "alice", new) == Opened(b"media", 2)
    meeting.advance(RETIRE_AFTER_US - 1)
    assert isinstance(meeting.open(bob, "alice", old), Opened)  # late, reordered: still opens
    meeting.advance(1)
    assert refusal(meeting.open(bob, "alice", old)) is FrameRefusal.RETIRED
    assert isinstance(meeting.open(bob, "alice", meeting.seal("alice", object_seq=3)), Opened)


def test_after_a_leave_nothing_sent_after_the_switch_opens_with_the_leavers_keys() -> None:
    meeting = Meeting()
    meeting.join("alice")
    meeting.join("bob")
    carol = meeting.join("carol")
    meeting.advance(SWITCH)
    assert isinstance(meeting.open(carol, "alice", meeting.seal("alice")), Opened)
    meeting.leave("carol")
    meeting.advance(SWITCH)
    for sender in ("alice", "bob"):
        after = meeting.seal(sender, b"secret")
        assert refusal(meeting.open(carol, sender, after)) is FrameRefusal.UNKNOWN_KEY
        assert isinstance(
            meeting.open(meeting.managers["bob" if sender == "alice" else "alice"], sender, after), Opened
        )


def test_joins_during_a_pending_rotation_merge_into_it() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    meeting.join("bob")
    meeting.join("carol")
    assert alice.rotations == 1
    meeting.advance(SWITCH)
    assert alice.sending_kid == 1
    for pid in ("bob", "carol"):
        assert isinstance(meeting.open(meeting.managers[pid], "alice", meeting.seal("alice")), Opened)


def test_a_leaver_that_got_the_pending_key_forces_a_fresh_one() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    meeting.join("bob")
    meeting.advance(SWITCH)
    carol = meeting.join("carol")  # alice's KID 2 is pending and carol holds it
    meeting.leave("carol")
    assert alice.rotations == 3
    meeting.advance(SWITCH)
    assert alice.sending_kid == 3
    sealed = meeting.seal("alice")
    assert refusal(meeting.open(carol, "alice", sealed)) is FrameRefusal.UNKNOWN_KEY
    assert isinstance(meeting.open(meeting.managers["bob"], "alice", sealed), Opened)


def test_a_leaver_that_never_got_our_key_causes_no_rotation() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    alice.participant_joined("ghost", e2ee=True, now_us=0)
    assert alice.participant_left("ghost", 0) == []
    assert alice.rotations == 0


def test_a_replayed_or_tampered_frame_is_refused_and_counted() -> None:
    meeting = Meeting()
    meeting.join("alice")
    bob = meeting.join("bob")
    meeting.advance(SWITCH)
    meta, payload = meeting.seal("alice")
    assert isinstance(bob.open("alice", payload, meta, meeting.now, video=False), Opened)
    assert refusal(bob.open("alice", payload, meta, meeting.now, video=False)) is FrameRefusal.REPLAY
    meta, payload = meeting.seal("alice")
    flipped = payload[:-1] + bytes((payload[-1] ^ 1,))
    assert refusal(bob.open("alice", flipped, meta, meeting.now, video=False)) is FrameRefusal.AUTH
    moved = header(track_id=2)  # the server moved the frame to another track
    assert refusal(bob.open("alice", payload, moved, meeting.now, video=False)) is FrameRefusal.AUTH
    assert refusal(bob.open("alice", b"", meta, meeting.now, video=False)) is FrameRefusal.MALFORMED
    assert isinstance(bob.open("alice", payload, meta, meeting.now, video=False), Opened)  # nothing was spent
    assert bob.summary()["refused_frames"] == {
        "malformed": 1,
        "unknown_key": 0,
        "retired": 0,
        "auth": 2,
        "replay": 1,
    }


def test_the_payload_length_is_not_part_of_the_metadata() -> None:
    meeting = Meeting()
    meeting.join("alice")
    bob = meeting.join("bob")
    meeting.advance(SWITCH)
    meta, payload = meeting.seal("alice")
    other_length = meta[:24] + (len(payload)).to_bytes(4, "big")
    assert isinstance(bob.open("alice", payload, other_length, meeting.now, video=False), Opened)


def test_plaintext_is_accepted_only_from_senders_that_do_not_announce_e2ee() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    alice.participant_joined("plain", e2ee=False, now_us=0)
    assert alice.open("plain", b"DTs1 clear", header(), 0, video=False) == Opened(b"DTs1 clear", None)
    assert alice.plaintext == 1
    bob = meeting.join("bob")
    meeting.advance(SWITCH)
    clear = b"DTs1 clear frame from an encrypting sender"
    assert isinstance(bob.open("alice", clear, header(), meeting.now, video=False), Refused)
    assert bob.plaintext == 0
    assert bob.decrypted == 0


def keyframe_header(object_seq: int = 0) -> bytes:
    return encode_frame(track_id=1, group=1, object_seq=object_seq, capture_us=1, payload=b"", keyframe=True)[
        :HEADER_SIZE
    ]


def test_video_that_opens_again_after_refusals_asks_for_a_keyframe_once() -> None:
    meeting = Meeting()
    meeting.join("alice")
    early = meeting.seal("alice")
    bob = meeting.join("bob")  # holds alice's next key, never the one `early` was sealed with
    late = meeting.seal("alice", object_seq=1)  # before alice's switch: still the old key
    for meta, payload in (early, late):
        assert refusal(bob.open("alice", payload, meta, meeting.now, video=True)) is FrameRefusal.UNKNOWN_KEY
    meeting.advance(SWITCH)
    first, second = meeting.seal("alice", object_seq=2), meeting.seal("alice", object_seq=3)
    assert meeting.open(bob, "alice", first, video=True) == Opened(b"media", 1, resumed=True)
    assert meeting.open(bob, "alice", second, video=True) == Opened(b"media", 1, resumed=False)


def test_no_keyframe_is_asked_for_when_video_resumes_at_a_keyframe_or_for_audio() -> None:
    meeting = Meeting()
    meeting.join("alice")
    bob = meeting.join("bob")
    refused_video, refused_audio = meeting.seal("alice"), meeting.seal("alice", object_seq=1)
    assert isinstance(bob.open("alice", refused_video[1], refused_video[0], 0, video=True), Refused)
    assert isinstance(bob.open("alice", refused_audio[1], refused_audio[0], 0, video=False), Refused)
    meeting.advance(SWITCH)
    audio = meeting.open(bob, "alice", meeting.seal("alice", object_seq=5), video=False)
    assert audio == Opened(b"media", 1, resumed=False)
    meta = keyframe_header()
    opened = bob.open(
        "alice", meeting.managers["alice"].seal(meta, b"key", meeting.now), meta, meeting.now, video=True
    )
    assert opened == Opened(b"key", 1, resumed=False)


def test_a_reconnect_keeps_the_identity_and_never_reuses_a_kid() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    meeting.join("bob")
    meeting.advance(SWITCH)
    alice.seal(header(), b"x", meeting.now)
    kid = alice.sending_kid
    identity = alice.identity.public_key
    meeting.leave("alice")
    again = meeting.join("alice-2", manager=alice)
    assert again.identity.public_key == identity
    assert again.sending_kid is not None
    assert kid is not None
    assert again.sending_kid > kid
    meeting.advance(SWITCH)
    assert isinstance(meeting.open(meeting.managers["bob"], "alice-2", meeting.seal("alice-2")), Opened)


def test_a_participant_replaced_by_a_new_session_is_a_leave_then_a_join() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    meeting.join("bob")
    meeting.advance(SWITCH)
    impostor = KeyManager()  # the same participant id from a new session, with a new identity
    actions = impostor.joined("bob", [("alice", True)], meeting.now)
    meeting.managers["bob"] = impostor
    meeting.run("alice", alice.participant_joined("bob", e2ee=True, now_us=meeting.now))
    meeting.run("bob", actions)
    assert alice.refused_key_messages[KeyMessageRefusal.IDENTITY_CHANGED] == 0
    assert alice.safety_number("bob") == impostor.safety_number("alice")
    meeting.advance(SWITCH)
    assert isinstance(meeting.open(impostor, "alice", meeting.seal("alice")), Opened)


def test_refused_key_messages_are_counted_and_change_nothing() -> None:
    meeting = Meeting()
    alice = meeting.join("alice")
    mallory = Identity.generate()
    alice.participant_joined("mallory", e2ee=True, now_us=0)
    bob = meeting.join("bob")
    meeting.advance(SWITCH)
    media_keys: list[bytes] = []
    for action in alice.participant_joined("carol", e2ee=True, now_us=meeting.now):
        assert isinstance(action, SendKeyMessage)
    carol = KeyManager()
    carol.joined("carol", [("alice", True), ("bob", True)], meeting.now)
    for action in alice.receive("carol", encode_hello(carol.identity.public_key), meeting.now):
        assert isinstance(action, SendKeyMessage)
        if action.to == ("bob",):
            media_keys.append(action.payload)
    [to_bob] = media_keys
    bob_kid = bob.summary()
    assert bob.receive("alice", to_bob, meeting.now) == []
    cases = [
        ("mallory", to_bob, KeyMessageRefusal.UNKNOWN_SENDER),
        ("alice", to_bob, KeyMessageRefusal.STALE_KID),
        ("alice", encode_hello(mallory.public_key), KeyMessageRefusal.IDENTITY_CHANGED),
        ("bob", encode_hello(bob.identity.public_key), KeyMessageRefusal.MALFORMED),
        ("alice", b"\x01\x09", KeyMessageRefusal.MALFORMED),
        ("alice", to_bob[:20] + bytes((to_bob[20] ^ 4,)) + to_bob[21:], KeyMessageRefusal.AUTH),
    ]
    for sender, payload, kind in cases:
        before = bob.refused_key_messages[kind]
        assert bob.receive(sender, payload, meeting.now) == []
        assert bob.refused_key_messages[kind] == before + 1, kind
    assert bob.safety_number("alice") == alice.safety_number("bob")
    assert bob.summary()["sending_kid"] == bob_kid["sending_kid"]


def test_sealing_before_the_first_join_is_refused() -> None:
    with pytest.raises(E2eeError, match="before the first join"):
        KeyManager().seal(header(), b"x", 0)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=200))
def test_any_bytes_decode_or_raise_a_key_message_error(payload: bytes) -> None:
    message: Hello | SealedMediaKey | KeyMessageRefusal
    try:
        message = decode_key_message(payload)
    except KeyMessageError as exc:
        message = exc.refusal
    if isinstance(message, KeyMessageRefusal):
        assert message is KeyMessageRefusal.MALFORMED
        return
    if isinstance(message, Hello):
        assert len(payload) == HELLO_SIZE
        assert encode_hello(message.public_key) == payload
    else:
        assert isinstance(message, SealedMediaKey)
        assert len(payload) == MEDIA_KEY_SIZE


@functools.cache
def _pair() -> tuple[KeyManager, KeyManager]:
    """alice and bob, each holding the other's key (built once: hypothesis reuses them, which the test
    below requires to stay unchanged anyway)."""
    meeting = Meeting()
    return meeting.join("alice"), meeting.join("bob")


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=120),
        st.builds(lambda body: b"\x01\x02" + body, st.binary(min_size=70, max_size=70)),
        st.builds(lambda body: b"\x01\x01" + body, st.binary(min_size=65, max_size=65)),
    ),
    sender=st.sampled_from(["alice", "carol"]),
)
def test_arbitrary_key_messages_never_raise_or_change_what_a_manager_holds(
    payload: bytes, sender: str
) -> None:
    alice, bob = _pair()
    before = (bob.safety_numbers(), bob.has_key_from("alice"), bob.sending_kid, bob.rotations)
    refused = sum(bob.refused_key_messages.values())
    assert bob.receive(sender, payload, 0) == []
    assert (bob.safety_numbers(), bob.has_key_from("alice"), bob.sending_kid, bob.rotations) == before
    assert sum(bob.refused_key_messages.values()) == refused + 1
    assert alice.sending_kid is not None


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=64), video=st.booleans(), sender=st.sampled_from(["alice", "carol"]))
def test_arbitrary_frames_are_refused_and_counted_never_raised(
    payload: bytes, video: bool, sender: str
) -> None:
    _, bob = _pair()
    before = sum(bob.refused_frames.values())
    result = bob.open(sender, payload, header(), 0, video=video)
    assert isinstance(result, Refused)
    assert sum(bob.refused_frames.values()) == before + 1
    assert bob.has_key_from("alice")
