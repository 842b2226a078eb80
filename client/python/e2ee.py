"""The end-to-end key manager of one participant (docs/E2EE.md): who holds which media key, when this
client's own key rotates, and sealing and opening media frames with SFrame (RFC 9605).

Sans-I/O and free of clocks: the session feeds it signaling events (`joined`, `participant_joined`,
`participant_left`, `receive`) with the time in µs, and sends the key messages they return; it opens
received frames with `open`, whose `resumed` flag tells a video receiver to ask for a keyframe. The byte formats live in `keymessages`; the TypeScript twin of this module
is `client/web/src/lib/e2ee.ts`.

Keys: this client sends under one media key at a time, its KID being the epoch (0, 1, 2, ...; never reused,
not even across reconnects). A rotation makes the next epoch's key, sends it to every member whose identity
is known, and switches to it `ROTATION_DELAY_US` later, so receivers hold it before the first frame needs
it. Rotations requested while one is pending merge into it: a newcomer gets the pending key; a leaver that
already got the pending key forces a fresh one (it must not read what follows), never used before its own
switch. A receiver keeps one SFrame context per sender (and suite), and retires a sender's older keys
`RETIRE_AFTER_US` after the first frame under a newer key authenticates. SFrame metadata is the first 24
bytes of the media frame header: routing fields and flags are authenticated, `payload_length` is not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple

from darktower.client.errors import ClientError
from darktower.client.keymessages import (
    BASE_KEY_SIZE,
    DEFAULT_SUITE,
    WRAP_NONCE_SIZE,
    Hello,
    Identity,
    KeyMessageError,
    KeyMessageRefusal,
    MediaKey,
    SealedMediaKey,
    decode_key_message,
    encode_hello,
    load_public_key,
    open_media_key,
    safety_number,
    seal_media_key,
    wrap_key,
)
from darktower.client.sframe import (
    CipherSuite,
    SFrameAuthError,
    SFrameContext,
    SFrameError,
    SFrameHeaderError,
    SFrameReplayError,
    SFrameUnknownKeyError,
    decode_header,
)
from darktower.proto.frame import FLAG_KEYFRAME, HEADER_SIZE

log = logging.getLogger(__name__)

ROTATION_DELAY_US: Final = 500_000
RETIRE_AFTER_US: Final = 2_000_000
METADATA_SIZE: Final = 24
"""The part of the 28-byte media frame header that SFrame authenticates: all but `payload_length`."""


class E2eeError(ClientError):
    """The key manager was misused (a frame sealed before the first join)."""


class FrameRefusal(StrEnum):
    """Why a received frame was refused (dropped, never rendered); the same names as the browser's.

    A receiver cannot tell plaintext from forged ciphertext: plaintext from a sender announced as encrypting
    is refused as `malformed` when it does not start with an SFrame header, else as `unknown_key` or `auth`.
    """

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    RETIRED = "retired"
    AUTH = "auth"
    REPLAY = "replay"


_SFRAME_REFUSALS: Final[dict[type[SFrameError], FrameRefusal]] = {
    SFrameAuthError: FrameRefusal.AUTH,
    SFrameReplayError: FrameRefusal.REPLAY,
    SFrameHeaderError: FrameRefusal.MALFORMED,
}
"""How a frame that fails to open is counted (a missing key is told apart by the KID's history)."""
_WANT_OF_A_KEY: Final = frozenset({FrameRefusal.UNKNOWN_KEY, FrameRefusal.RETIRED})


@dataclass(frozen=True, slots=True)
class SendKeyMessage:
    """Send `payload` as a `KeyMessage` to `to` (empty: everyone else in the meeting)."""

    to: tuple[str, ...]
    payload: bytes


KeyAction = SendKeyMessage
"""What the session must do for the key manager."""


class Opened(NamedTuple):
    """A frame opened: its plaintext and the KID it was sealed under (None: a non-encrypting sender's).
    Tuples, as one is made per frame."""

    plaintext: bytes
    kid: int | None
    resumed: bool = False
    """The first video frame opened from this sender since some were refused for want of a key, and not a
    keyframe: the decoder missed what came before, so ask the sender for a keyframe."""


class Refused(NamedTuple):
    refusal: FrameRefusal
    reason: str


@dataclass(slots=True)
class _PeerIdentity:
    public_key: bytes
    wrap_out: bytes
    """Wraps media keys this client sends to the peer."""
    wrap_in: bytes
    """Opens media keys the peer sends to this client."""
    safety_number: str


@dataclass(slots=True)
class _Peer:
    participant_id: str
    existing: bool
    """In this client's JoinResponse roster: it gets the current key; a newcomer makes this client rotate."""
    encrypting: bool
    """Its Join announced e2ee: plaintext from it is refused."""
    identity: _PeerIdentity | None = None
    proven: bool = False
    """A MEDIA_KEY from it authenticated: it holds the private key of its identity."""
    holds_our_key: bool = False
    last_kid: int | None = None
    contexts: dict[CipherSuite, SFrameContext] = field(default_factory=dict)
    held: dict[int, CipherSuite] = field(default_factory=dict)
    retired: set[int] = field(default_factory=set)
    retire_at: dict[int, int] = field(default_factory=dict)
    newest_opened: int | None = None
    video_waiting: bool = False
    """Video from it was refused for want of a key since the last video frame that opened."""

    def forget(self) -> None:
        self.identity = None
        self.held.clear()
        self.contexts.clear()
        self.retire_at.clear()

    def retire(self, kid: int) -> None:
        suite = self.held.pop(kid, None)
        if suite is not None:
            self.contexts[suite].retire_key(kid)
        self.retire_at.pop(kid, None)
        self.retired.add(kid)


@dataclass(slots=True)
class _OwnKey:
    key: MediaKey
    switch_at_us: int
    sent_to: set[str] = field(default_factory=set)


class KeyManager:
    """One participant's keys across its sessions; the identity is kept for the manager's life, so a
    reconnect keeps it. Not thread-safe; use from one event loop."""

    def __init__(
        self,
        identity: Identity | None = None,
        *,
        suite: CipherSuite = DEFAULT_SUITE,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.identity = identity if identity is not None else Identity.generate()
        self.suite = suite
        self.refused_frames: dict[FrameRefusal, int] = dict.fromkeys(FrameRefusal, 0)
        self.refused_key_messages: dict[KeyMessageRefusal, int] = dict.fromkeys(KeyMessageRefusal, 0)
        self.decrypted = 0
        self.plaintext = 0
        """Frames accepted as plaintext from senders that do not announce e2ee."""
        self.rotations = 0
        self._random = random_bytes
        self._peers: dict[str, _Peer] = {}
        self._sending = SFrameContext(suite)
        self._self_id = ""
        self._next_kid = 0
        self._current: _OwnKey | None = None
        self._pending: _OwnKey | None = None
        self._due_us: int | None = None
        """No earlier than this, `advance` has something to do (a switch, a retirement); None: nothing."""

    # --- what the session tells it ----------------------------------------------------------------------

    def joined(self, self_id: str, roster: Iterable[tuple[str, bool]], now_us: int) -> list[KeyAction]:
        """This client (re)joined as `self_id` with `roster` ((participant id, announces e2ee) pairs) already
        there: every peer starts over, this client sends under a brand-new key at once (nobody in this
        session holds an older one) and says HELLO to all."""
        self._self_id = self_id
        for peer in self._peers.values():
            peer.forget()
        self._peers = {
            pid: _Peer(pid, existing=True, encrypting=e2ee) for pid, e2ee in roster if pid != self_id
        }
        if self._pending is not None:
            self._sending.retire_key(self._pending.key.kid)
            self._pending = None
        self._switch_to(self._new_key(now_us))
        return [SendKeyMessage((), encode_hello(self.identity.public_key))]

    def participant_joined(self, participant_id: str, e2ee: bool, now_us: int) -> list[KeyAction]:
        """Someone joined after this client: its HELLO will make this client rotate. A participant id that is
        already here joined again from another session, which replaced the old one: that one left."""
        if participant_id == self._self_id:
            return []
        actions = self.participant_left(participant_id, now_us) if participant_id in self._peers else []
        self._peers[participant_id] = _Peer(participant_id, existing=False, encrypting=e2ee)
        return actions

    def participant_left(self, participant_id: str, now_us: int) -> list[KeyAction]:
        """Someone left: its keys and identity are forgotten, and this client rotates if it held our key."""
        peer = self._peers.pop(participant_id, None)
        if peer is None:
            return []
        peer.forget()
        if not peer.holds_our_key:
            return []
        if self._pending is not None and participant_id not in self._pending.sent_to:
            return []  # the pending key, which it never got, takes over soon
        return self._rotate(now_us)

    def receive(self, from_id: str, payload: bytes, now_us: int) -> list[KeyAction]:
        """A key message from `from_id`; a refused one is counted, logged and changes nothing."""
        try:
            message = decode_key_message(payload)
            if isinstance(message, Hello):
                return self._on_hello(from_id, message.public_key, now_us)
            return self._on_media_key(from_id, message)
        except KeyMessageError as exc:
            self.refused_key_messages[exc.refusal] += 1
            log.warning("refused a key message from %s: %s", from_id, exc.message)
            return []

    def advance(self, now_us: int) -> None:
        """Applies what time has made due: the pending switch, retirements (cheap when nothing is due: it
        runs for every frame)."""
        if self._due_us is None or now_us < self._due_us:
            return
        if self._pending is not None and now_us >= self._pending.switch_at_us:
            self._switch_to(self._pending)
        self._due_us = None if self._pending is None else self._pending.switch_at_us
        for peer in self._peers.values():
            for kid in [kid for kid, at in peer.retire_at.items() if now_us >= at]:
                peer.retire(kid)
            for at in peer.retire_at.values():
                self._wake_at(at)

    # --- media ------------------------------------------------------------------------------------------

    def seal(self, metadata: bytes, payload: bytes, now_us: int) -> bytes:
        """Seals one frame payload under the current key; `metadata` starts with the frame header."""
        self.advance(now_us)
        if self._current is None:
            raise E2eeError("no_media_key", "no media key before the first join")
        return self._sending.encrypt(self._current.key.kid, payload, metadata[:METADATA_SIZE])

    def open(
        self, sender_id: str, payload: bytes, metadata: bytes, now_us: int, *, video: bool
    ) -> Opened | Refused:
        """Opens one frame payload from `sender_id`, counting the outcome. For `video`, the first frame that
        opens after some were refused for want of a key (not yet arrived, or one this client never gets:
        a newcomer cannot open what was sealed before the switch) comes back `resumed`, unless it is a
        keyframe (`metadata` starts with the frame header, whose flags say)."""
        self.advance(now_us)
        peer = self._peers.get(sender_id)
        if peer is not None and not peer.encrypting:
            self.plaintext += 1
            return Opened(payload, None)
        opened = self._try_open(peer, sender_id, payload, metadata[:METADATA_SIZE], now_us)
        if isinstance(opened, Refused):
            self.refused_frames[opened.refusal] += 1
            if video and peer is not None and opened.refusal in _WANT_OF_A_KEY:
                peer.video_waiting = True
            return opened
        self.decrypted += 1
        if video and peer is not None and peer.video_waiting:
            peer.video_waiting = False
            if not metadata[1] & FLAG_KEYFRAME:
                return opened._replace(resumed=True)
        return opened

    def seal_frame(self, frame: bytes, now_us: int) -> bytes:
        """A whole media frame (docs/FRAME-FORMAT.md) with its payload sealed and `payload_length` set."""
        sealed = self.seal(frame[:METADATA_SIZE], frame[HEADER_SIZE:], now_us)
        return frame[:METADATA_SIZE] + len(sealed).to_bytes(4, "big") + sealed

    def open_frame(self, sender_id: str, frame: bytes, now_us: int, *, video: bool) -> Opened | Refused:
        """`open` on a whole received media frame: what opens is the frame with its payload opened (and
        `payload_length` set)."""
        opened = self.open(sender_id, frame[HEADER_SIZE:], frame[:METADATA_SIZE], now_us, video=video)
        if isinstance(opened, Refused):
            return opened
        if opened.kid is None:  # a non-encrypting sender's frame, as it came
            return opened._replace(plaintext=frame)
        plaintext = opened.plaintext
        rebuilt = frame[:METADATA_SIZE] + len(plaintext).to_bytes(4, "big") + plaintext
        return opened._replace(plaintext=rebuilt)

    # --- what the session asks --------------------------------------------------------------------------

    @property
    def participant_id(self) -> str:
        return self._self_id

    @property
    def sending_kid(self) -> int | None:
        """The KID frames are sealed under now (None before the first join)."""
        return None if self._current is None else self._current.key.kid

    def safety_number(self, participant_id: str) -> str | None:
        """The safety number shared with `participant_id`, once its HELLO arrived."""
        peer = self._peers.get(participant_id)
        return None if peer is None or peer.identity is None else peer.identity.safety_number

    def safety_numbers(self) -> dict[str, str]:
        return {pid: p.identity.safety_number for pid, p in self._peers.items() if p.identity is not None}

    def proven_identity(self, participant_id: str) -> bytes | None:
        """The identity key of `participant_id` once a media key from it authenticated (it owns the key)."""
        peer = self._peers.get(participant_id)
        if peer is None or not peer.proven or peer.identity is None:
            return None
        return peer.identity.public_key

    def has_key_from(self, participant_id: str) -> bool:
        return bool(self.kids_from(participant_id))

    def kids_from(self, participant_id: str) -> list[int]:
        """The KIDs of `participant_id`'s keys held now (not yet retired), oldest first."""
        peer = self._peers.get(participant_id)
        return [] if peer is None else sorted(peer.held)

    def summary(self) -> dict[str, object]:
        """Counts for reports: frames decrypted, accepted as plaintext, refused by kind; key messages
        refused by kind; rotations; the current KID."""
        return {
            "decrypted": self.decrypted,
            "plaintext": self.plaintext,
            "refused_frames": {kind.value: n for kind, n in self.refused_frames.items()},
            "refused_key_messages": {kind.value: n for kind, n in self.refused_key_messages.items()},
            "rotations": self.rotations,
            "sending_kid": self.sending_kid,
        }

    # --- internals --------------------------------------------------------------------------------------

    def _on_hello(self, from_id: str, public_key: bytes, now_us: int) -> list[KeyAction]:
        if from_id == self._self_id:
            raise KeyMessageError(KeyMessageRefusal.MALFORMED, "a HELLO from this client itself")
        peer = self._peers.get(from_id)
        if peer is not None and peer.identity is not None:
            if peer.identity.public_key == public_key:
                return []
            raise KeyMessageError(
                KeyMessageRefusal.IDENTITY_CHANGED, f"{from_id!r} announced a second identity key"
            )
        load_public_key(public_key)
        if peer is None:  # its HELLO overtook its ParticipantJoined; it cannot have been in our roster
            peer = _Peer(from_id, existing=False, encrypting=True)
            self._peers[from_id] = peer
        own = self.identity
        peer.identity = _PeerIdentity(
            public_key=public_key,
            wrap_out=wrap_key(own, public_key, own.public_key, public_key),
            wrap_in=wrap_key(own, public_key, public_key, own.public_key),
            safety_number=safety_number(own.public_key, public_key),
        )
        if peer.existing:
            return [
                self._media_key_for(peer, key) for key in (self._current, self._pending) if key is not None
            ]
        actions: list[KeyAction] = [SendKeyMessage((from_id,), encode_hello(own.public_key))]
        if self._pending is not None:
            return [*actions, self._media_key_for(peer, self._pending)]
        return [*actions, *self._rotate(now_us)]

    def _on_media_key(self, from_id: str, message: SealedMediaKey) -> list[KeyAction]:
        peer = self._peers.get(from_id)
        if peer is None or peer.identity is None:
            raise KeyMessageError(
                KeyMessageRefusal.UNKNOWN_SENDER, f"MEDIA_KEY from {from_id!r} before its HELLO"
            )
        key = open_media_key(peer.identity.wrap_in, from_id, self._self_id, message)
        return self._add_peer_key(peer, key)

    def _add_peer_key(self, peer: _Peer, key: MediaKey) -> list[KeyAction]:
        if peer.last_kid is not None and key.kid <= peer.last_kid:
            raise KeyMessageError(
                KeyMessageRefusal.STALE_KID,
                f"MEDIA_KEY from {peer.participant_id!r} names KID {key.kid}, not newer than {peer.last_kid}",
            )
        context = peer.contexts.get(key.suite)
        if context is None:
            context = peer.contexts[key.suite] = SFrameContext(key.suite)
        context.add_decryption_key(key.kid, key.base_key)
        peer.last_kid = key.kid
        peer.held[key.kid] = key.suite
        peer.proven = True
        return []

    def _new_key(self, now_us: int) -> _OwnKey:
        """A new epoch's key in the sending context (not yet used)."""
        kid = self._next_kid
        self._next_kid += 1
        base_key = self._random(BASE_KEY_SIZE)
        self._sending.add_encryption_key(kid, base_key)
        return _OwnKey(MediaKey(self.suite, kid, base_key), now_us + ROTATION_DELAY_US)

    def _rotate(self, now_us: int) -> list[KeyAction]:
        """Makes the pending key (replacing a pending one) and sends it to every member known by identity."""
        key = self._new_key(now_us)
        if self._pending is not None:
            self._sending.retire_key(self._pending.key.kid)
        self._pending = key
        self._wake_at(key.switch_at_us)
        self.rotations += 1
        return [self._media_key_for(peer, key) for peer in self._peers.values() if peer.identity is not None]

    def _media_key_for(self, peer: _Peer, own: _OwnKey) -> SendKeyMessage:
        assert peer.identity is not None
        own.sent_to.add(peer.participant_id)
        peer.holds_our_key = True
        payload = seal_media_key(
            peer.identity.wrap_out, self._self_id, peer.participant_id, own.key, self._random(WRAP_NONCE_SIZE)
        )
        return SendKeyMessage((peer.participant_id,), payload)

    def _wake_at(self, at_us: int) -> None:
        if self._due_us is None or at_us < self._due_us:
            self._due_us = at_us

    def _switch_to(self, key: _OwnKey) -> None:
        previous = self._current
        self._current = key
        if self._pending is key:
            self._pending = None
        if previous is not None and previous.key.kid != key.key.kid:
            self._sending.retire_key(previous.key.kid)

    def _try_open(
        self, peer: _Peer | None, sender_id: str, payload: bytes, metadata: bytes, now_us: int
    ) -> Opened | Refused:
        context = _context_for(peer, sender_id, payload)
        if isinstance(context, Refused):
            return context
        assert peer is not None
        try:
            decrypted = context.decrypt(payload, metadata)
        except SFrameUnknownKeyError as exc:
            refusal = FrameRefusal.RETIRED if exc.kid in peer.retired else FrameRefusal.UNKNOWN_KEY
            return Refused(refusal, f"no key for KID {exc.kid} from {sender_id!r}")
        except SFrameError as exc:
            return Refused(_SFRAME_REFUSALS.get(type(exc), FrameRefusal.MALFORMED), str(exc))
        kid = decrypted.kid
        if peer.newest_opened is None or kid > peer.newest_opened:
            peer.newest_opened = kid
            for older in peer.held:
                if older < kid and older not in peer.retire_at:
                    peer.retire_at[older] = now_us + RETIRE_AFTER_US
                    self._wake_at(now_us + RETIRE_AFTER_US)
        return Opened(decrypted.plaintext, kid)


def _context_for(peer: _Peer | None, sender_id: str, payload: bytes) -> SFrameContext | Refused:
    """The SFrame context that holds the frame's KID if any. A sender's keys almost always share one suite,
    hence one context, which then decodes the header itself (once per frame, on the hot path)."""
    if peer is not None and len(peer.contexts) == 1:
        return next(iter(peer.contexts.values()))
    try:
        kid = decode_header(payload).kid
    except SFrameHeaderError as exc:
        return Refused(FrameRefusal.MALFORMED, str(exc))
    suite = None if peer is None else peer.held.get(kid)
    if peer is None or suite is None:
        refusal = (
            FrameRefusal.RETIRED if peer is not None and kid in peer.retired else FrameRefusal.UNKNOWN_KEY
        )
        return Refused(refusal, f"no key for KID {kid} from {sender_id!r}")
    return peer.contexts[suite]
