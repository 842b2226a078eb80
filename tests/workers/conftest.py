"""Fixtures of the worker tests: `World`, a `WorkerCore` driven the way the network adapter drives it.

`World` plays the adapter and the clients at once: it signs real join tokens, sends real encoded
`ClientMessage`s and frames, carries out the core's actions (decoding every signaling message each session
receives, keeping each session's video streams the way the adapter opens and ends them) and checks the
action contract while doing so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from darktower.core.config import LimitsConfig
from darktower.core.tokens import TokenSigner, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import encode_frame
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.actions import (
    Action,
    CloseSession,
    EndVideoGroup,
    SendDatagram,
    SendSignaling,
    SendVideo,
)
from darktower.workers.core import WorkerCore

T0 = 1_700_000_000
"""Seconds since the epoch at which the tests' tokens are signed and the world's clock starts."""


@dataclass
class VideoStream:
    """One unidirectional stream the adapter opened towards a subscriber."""

    track_id: int
    group: int
    frames: list[bytes] = field(default_factory=list)
    ended: bool = False


class World:
    def __init__(self, signer: TokenSigner, verifier: TokenVerifier, limits: LimitsConfig) -> None:
        self.core = WorkerCore(verifier=verifier, limits=limits)
        self.signer = signer
        self.limits = limits
        self.now_us = T0 * 1_000_000
        self.inbox: dict[int, list[pb.ServerMessage]] = defaultdict(list)
        self.datagrams: dict[int, list[bytes]] = defaultdict(list)
        self.streams: dict[int, list[VideoStream]] = defaultdict(list)
        self.closed: dict[int, CloseSession] = {}
        self._current: dict[tuple[int, int], VideoStream] = {}
        self._readers: dict[int, DelimitedReader] = {}
        self._next_session = 1
        self._next_request = 1
        self._next_stream: dict[int, int] = defaultdict(lambda: 2)

    # --- clock and tokens --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)

    def token(
        self,
        meeting_id: str,
        participant_id: str,
        *,
        name: str | None = None,
        publish: bool = True,
        subscribe: bool = True,
        signed_at: float | None = None,
    ) -> str:
        token, _ = self.signer.sign(
            meeting_id=meeting_id,
            participant_id=participant_id,
            display_name=name or participant_id.title(),
            can_publish=publish,
            can_subscribe=subscribe,
            now=self.now_us / 1_000_000 if signed_at is None else signed_at,
        )
        return token

    # --- driving the core ---------------------------------------------------------------------------

    def open(self, meeting_id: str = "m1") -> int:
        session = self._next_session
        self._next_session += 1
        self._readers[session] = DelimitedReader(1 << 24)
        self.run(self.core.session_opened(session, meeting_id, self.now_us))
        return session

    def signaling(self, session: int, data: bytes) -> list[Action]:
        return self.run(self.core.signaling_received(session, data, self.now_us))

    def datagram(self, session: int, data: bytes) -> list[Action]:
        return self.run(self.core.datagram_received(session, data, self.now_us))

    def stream(self, session: int, stream_id: int, data: bytes, *, end: bool = False) -> list[Action]:
        return self.run(self.core.media_stream_received(session, stream_id, data, end, self.now_us))

    def reset(self, session: int, stream_id: int) -> list[Action]:
        return self.run(self.core.media_stream_reset(session, stream_id, self.now_us))

    def lagging(self, session: int, track_id: int) -> list[Action]:
        """What the adapter does when a subscriber's backlog is too long: reset its streams, tell the core."""
        current = self._current.pop((session, track_id), None)
        if current is not None:
            current.ended = True
        return self.run(self.core.subscriber_lagging(session, track_id, self.now_us))

    def disconnect(self, session: int) -> list[Action]:
        return self.run(self.core.session_closed(session, self.now_us))

    def new_stream_id(self, session: int) -> int:
        """The next client-initiated unidirectional stream id (2, 6, 10, ...)."""
        stream_id = self._next_stream[session]
        self._next_stream[session] = stream_id + 4
        return stream_id

    def request(self, session: int, message: pb.ClientMessage) -> pb.ServerMessage:
        """Sends the request with a fresh request id; returns its one reply (which leaves the inbox)."""
        message.request_id = self._next_request
        self._next_request += 1
        before = len(self.inbox[session])
        self.signaling(session, encode_delimited(message))
        received = self.inbox[session][before:]
        replies = [m for m in received if m.request_id == message.request_id]
        assert len(replies) == 1, f"expected one reply to request {message.request_id}, got {replies}"
        self.inbox[session][before:] = [m for m in received if m.request_id != message.request_id]
        return replies[0]

    def join(
        self,
        participant_id: str,
        meeting_id: str = "m1",
        *,
        publish: bool = True,
        subscribe: bool = True,
        name: str | None = None,
    ) -> tuple[int, pb.JoinResponse]:
        session = self.open(meeting_id)
        token = self.token(meeting_id, participant_id, name=name, publish=publish, subscribe=subscribe)
        reply = self.request(session, pb.ClientMessage(join=pb.Join(token=token)))
        assert reply.WhichOneof("body") == "join_response", reply
        return session, reply.join_response

    def publish(self, session: int, kind: pb.TrackKind, codec: str = "", label: str = "") -> int:
        codec = codec or ("opus" if kind == pb.TRACK_KIND_AUDIO else "vp8")
        reply = self.request(
            session, pb.ClientMessage(publish=pb.PublishTrack(kind=kind, codec=codec, label=label))
        )
        assert reply.WhichOneof("body") == "publish_response", reply
        return reply.publish_response.track.track_id

    def subscribe(self, session: int, track_id: int) -> pb.ServerMessage:
        return self.request(session, pb.ClientMessage(subscribe=pb.Subscribe(track_id=track_id)))

    def take(self, session: int) -> list[pb.ServerMessage]:
        """The signaling messages the session received since the last call."""
        messages = self.inbox[session]
        self.inbox[session] = []
        return messages

    def take_all(self) -> None:
        for session in list(self.inbox):
            self.take(session)

    def events(self, session: int) -> list[tuple[str, Any]]:
        """The server-initiated messages the session received since the last `take`, as (body, value)."""
        out = []
        for message in self.take(session):
            assert message.request_id == 0, message
            body = message.WhichOneof("body")
            assert body is not None
            out.append((body, getattr(message, body)))
        return out

    # --- the adapter's side -------------------------------------------------------------------------

    def run(self, actions: list[Action]) -> list[Action]:
        """Carries out the actions as the adapter would, checking what the contract promises."""
        for action in actions:
            if isinstance(action, SendSignaling):
                for body in self._readers[action.session].feed(action.data):
                    self.inbox[action.session].append(parse_server_message(body))
            elif isinstance(action, SendDatagram):
                assert action.sessions, "fan-out to nobody"
                assert len(set(action.sessions)) == len(action.sessions)
                for session in action.sessions:
                    self.datagrams[session].append(bytes(action.data))
            elif isinstance(action, SendVideo):
                self._send_video(action)
            elif isinstance(action, EndVideoGroup):
                for session in action.sessions:
                    current = self._current.pop((session, action.track_id))
                    assert current.group == action.group
                    current.ended = True
            else:
                assert action.session not in self.closed, "closed twice"
                self.closed[action.session] = action
        return actions

    def _send_video(self, action: SendVideo) -> None:
        assert action.sessions, "fan-out to nobody"
        assert len(set(action.sessions)) == len(action.sessions)
        for session in action.sessions:
            key = (session, action.track_id)
            if action.starts_group:
                previous = self._current.pop(key, None)
                if previous is not None:
                    previous.ended = True
                stream = self._current[key] = VideoStream(action.track_id, action.group)
                self.streams[session].append(stream)
            else:
                stream = self._current[key]
                assert stream.group == action.group
            stream.frames.append(bytes(action.data))

    def video_frames(self, session: int, track_id: int) -> list[list[bytes]]:
        """The frames the session received on each of its streams for the track, stream by stream."""
        return [s.frames for s in self.streams[session] if s.track_id == track_id]

    # --- frames -----------------------------------------------------------------------------------------

    @staticmethod
    def audio_frame(track_id: int, seq: int, payload: bytes = b"opus") -> bytes:
        return encode_frame(
            track_id=track_id, group=0, object_seq=seq, capture_us=T0 * 1_000_000 + seq, payload=payload
        )

    @staticmethod
    def video_frame(track_id: int, group: int, seq: int, payload: bytes = b"vp8") -> bytes:
        """Frame `seq` of the group; frame 0 is its keyframe."""
        return encode_frame(
            track_id=track_id,
            group=group,
            object_seq=seq,
            capture_us=T0 * 1_000_000 + group * 1000 + seq,
            payload=payload,
            keyframe=seq == 0,
        )


@pytest.fixture(scope="session")
def make_world(token_keys: tuple[TokenSigner, TokenVerifier]) -> Callable[..., World]:
    """`make_world(**limits)`: a world whose worker runs with those limits (defaults otherwise)."""

    def make(**limits: Any) -> World:
        signer, verifier = token_keys
        return World(signer, verifier, LimitsConfig(**limits))

    return make


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
