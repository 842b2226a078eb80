"""`Session`: one WebTransport session's state machine: signaling, admission and media ingestion.

Sans-I/O, driven by `WorkerCore`. The contract with the client (docs/ARCHITECTURE.md, signaling.proto):
- The first message must be `Join{token}`; anything else closes the session with `UNAUTHENTICATED`. The
  token must verify for the meeting the session's URL names; a refused token closes the session with the
  code of its problem (`UNAUTHENTICATED`, `TOKEN_EXPIRED`, `TOKEN_INVALID`, `WRONG_MEETING`).
- Every request gets exactly one reply carrying its `request_id`: its response, `Ack`, or an `Error`.
- Malformed input (undecodable message, empty body, request id 0, bad or oversize media frame) gets a
  non-fatal `Error{MALFORMED or BAD_FRAME}`; the input after `limits.malformed_input_tolerance` of them
  closes the session. A signaling length prefix over the limit closes it at once: the stream cannot be
  resynchronised after it.
- A fatal error is sent, then `CloseSession`; the member leaves the meeting at once, and all later input
  of the session is ignored.
- `KeyMessage` payloads are relayed unread; a session may send `4 * max_participants_per_meeting` of them
  at once (two rotations that rekey everyone, docs/E2EE.md), refilled at twice that meeting size per
  second; one more is refused with the non-fatal `RATE_LIMITED` (the client sends it again later), never
  counted as malformed: a legitimate burst of rekeying must not cost a participant its session.
- `HostAction` is carried out by the meeting (a host's only; see `Meeting.host_action`) and answered with
  `Ack` before its effects; an unknown kind or an over-long target id counts as malformed input.
- Media of a session that has not joined is ignored; a frame must belong to a track the session publishes,
  of the transport's kind (audio in datagrams, video on streams), and a video stream must start with the
  keyframe (`object_seq` 0) of its group and hold only that group's frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from darktower.core.config import LimitsConfig
from darktower.core.tokens import TokenError, TokenProblem, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import HEADER_SIZE, FrameError, FrameHeader, FrameReader, parse_header
from darktower.proto.signaling import DelimitedReader, SignalingError, parse_client_message
from darktower.workers import messages
from darktower.workers.actions import Action, CloseSession, SendDatagram
from darktower.workers.errors import RequestRefusedError
from darktower.workers.meeting import HOST_ACTIONS, Meeting, Member, Track

log = logging.getLogger(__name__)

MAX_CODEC_CHARS: Final = 64
MAX_LABEL_CHARS: Final = 64
MAX_PARTICIPANT_ID_CHARS: Final = 128
"""Track descriptions are relayed to every member, so their size is bounded."""

_TOKEN_ERRORS: Final[dict[TokenProblem, pb.ErrorCode]] = {
    TokenProblem.MISSING: pb.ERROR_CODE_UNAUTHENTICATED,
    TokenProblem.EXPIRED: pb.ERROR_CODE_TOKEN_EXPIRED,
    TokenProblem.INVALID: pb.ERROR_CODE_TOKEN_INVALID,
    TokenProblem.WRONG_MEETING: pb.ERROR_CODE_WRONG_MEETING,
}
_TRACK_KINDS: Final = frozenset({pb.TRACK_KIND_AUDIO, pb.TRACK_KIND_VIDEO})


class _KeyMessageBudget:
    """A token bucket over a session's key messages: `burst` at once, `per_second` sustained."""

    __slots__ = ("_burst", "_per_second", "_tokens", "_updated_us")

    def __init__(self, burst: int, per_second: int) -> None:
        self._burst = burst
        self._per_second = per_second
        self._tokens = float(burst)
        self._updated_us: int | None = None

    def take(self, now_us: int) -> bool:
        """Spends one message if the budget allows it (a clock that stepped back refills nothing)."""
        if self._updated_us is not None and now_us > self._updated_us:
            refill = (now_us - self._updated_us) * self._per_second / 1_000_000
            self._tokens = min(float(self._burst), self._tokens + refill)
        if self._updated_us is None or now_us > self._updated_us:
            self._updated_us = now_us
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _Inbound:
    """A publisher's unidirectional stream: one video group, parsed as it arrives."""

    __slots__ = ("dropped", "group", "reader", "track")

    def __init__(self, max_payload: int) -> None:
        self.reader = FrameReader(max_payload)
        self.track: Track | None = None
        self.group = 0
        self.dropped = False
        """A bad frame was met: the rest of the stream is ignored."""


class Session:
    __slots__ = (
        "_inbound",
        "_key_budget",
        "_limits",
        "_malformed",
        "_max_payload",
        "_meeting_for",
        "_reader",
        "_verifier",
        "closed",
        "meeting",
        "meeting_id",
        "member",
        "session",
    )

    def __init__(
        self,
        session: int,
        meeting_id: str,
        *,
        verifier: TokenVerifier,
        limits: LimitsConfig,
        meeting_for: Callable[[str], Meeting],
    ) -> None:
        """`meeting_for` returns the meeting of that id, creating it if this worker has none."""
        self.session = session
        self.meeting_id = meeting_id
        self._verifier = verifier
        self._limits = limits
        self._meeting_for = meeting_for
        self._reader = DelimitedReader(limits.max_signaling_message_bytes)
        self._max_payload = limits.max_frame_payload_bytes
        self._malformed = 0
        self._inbound: dict[int, _Inbound] = {}
        participants = limits.max_participants_per_meeting
        self._key_budget = _KeyMessageBudget(4 * participants, 2 * participants)
        self.meeting: Meeting | None = None
        self.member: Member | None = None
        self.closed = False
        """Closed by the server (fatal error, Leave) or the transport; input is ignored from then on."""

    def ignoring_input(self) -> bool:
        return self.closed or (self.member is not None and not self.member.active)

    def _log_extra(self) -> dict[str, Any]:
        member = self.member
        return {
            "meeting_id": self.meeting_id,
            "participant_id": member.participant_id if member is not None else None,
        }

    # --- signaling -----------------------------------------------------------------------------------

    def signaling_received(self, data: bytes, now_us: int) -> list[Action]:
        if self.ignoring_input():
            return []
        try:
            bodies = self._reader.feed(data)
        except SignalingError as exc:
            return self._fatal(0, pb.ERROR_CODE_MALFORMED, f"signaling stream unreadable: {exc}")
        actions: list[Action] = []
        for body in bodies:
            actions += self._message(body, now_us)
            if self.ignoring_input():
                break
        return actions

    def _message(self, body: bytes, now_us: int) -> list[Action]:
        try:
            message = parse_client_message(body)
        except SignalingError as exc:
            return self._malformed_input(0, pb.ERROR_CODE_MALFORMED, str(exc))
        request_id = message.request_id
        kind = message.WhichOneof("body")
        if kind is None:
            return self._malformed_input(request_id, pb.ERROR_CODE_MALFORMED, "message without a known body")
        if request_id == 0:
            return self._malformed_input(0, pb.ERROR_CODE_MALFORMED, "request_id must not be 0")
        member, meeting = self.member, self.meeting
        if member is not None and meeting is not None:
            return self._request(meeting, member, message, now_us)
        if kind != "join":
            return self._fatal(request_id, pb.ERROR_CODE_UNAUTHENTICATED, "the first message must be Join")
        return self._join(request_id, message.join, now_us)

    def _request(
        self, meeting: Meeting, member: Member, message: pb.ClientMessage, now_us: int
    ) -> list[Action]:
        """A joined session's request: exactly one reply, and whatever the meeting does about it."""
        request_id = message.request_id
        try:
            match message.WhichOneof("body"):
                case "join":
                    actions = self._refused(
                        request_id,
                        RequestRefusedError(pb.ERROR_CODE_ALREADY_JOINED, "this session has already joined"),
                    )
                case "publish":
                    actions = self._publish(meeting, member, request_id, message.publish)
                case "unpublish":
                    actions = meeting.unpublish(member, request_id, message.unpublish.track_id)
                case "subscribe":
                    actions = meeting.subscribe(member, request_id, message.subscribe.track_id, now_us)
                case "unsubscribe":
                    actions = meeting.unsubscribe(member, request_id, message.unsubscribe.track_id)
                case "request_keyframe":
                    actions = meeting.request_keyframe(
                        member, request_id, message.request_keyframe.track_id, now_us
                    )
                case "ping":
                    pong = pb.Pong(client_time_us=message.ping.client_time_us, server_time_us=now_us)
                    actions = [
                        messages.send(self.session, pb.ServerMessage(request_id=request_id, pong=pong))
                    ]
                case "key_message" | "host_action":
                    actions = self._about_others(meeting, member, message, now_us)
                case _:  # "leave", the one body left
                    actions = self._leave(meeting, member, request_id)
        except RequestRefusedError as exc:
            return self._refused(request_id, exc)
        return actions

    def _publish(
        self, meeting: Meeting, member: Member, request_id: int, publish: pb.PublishTrack
    ) -> list[Action]:
        if publish.kind not in _TRACK_KINDS:
            return self._malformed_input(request_id, pb.ERROR_CODE_MALFORMED, "unknown track kind")
        if len(publish.codec) > MAX_CODEC_CHARS or len(publish.label) > MAX_LABEL_CHARS:
            return self._malformed_input(
                request_id,
                pb.ERROR_CODE_MALFORMED,
                f"codec and label are limited to {MAX_CODEC_CHARS} and {MAX_LABEL_CHARS} characters",
            )
        return meeting.publish(member, request_id, publish.kind, publish.codec, publish.label)

    def _about_others(
        self, meeting: Meeting, member: Member, message: pb.ClientMessage, now_us: int
    ) -> list[Action]:
        """A request that concerns other members: a key message to relay, or a host's action."""
        if message.HasField("key_message"):
            return self._key_message(meeting, member, message.request_id, message.key_message, now_us)
        return self._host_action(meeting, member, message.request_id, message.host_action, now_us)

    def _key_message(
        self, meeting: Meeting, member: Member, request_id: int, key_message: pb.KeyMessage, now_us: int
    ) -> list[Action]:
        if not self._key_budget.take(now_us):
            return [
                messages.error(
                    self.session,
                    request_id,
                    pb.ERROR_CODE_RATE_LIMITED,
                    "too many key messages for now: send it again later",
                    fatal=False,
                )
            ]
        return meeting.relay_key_message(
            member, request_id, list(key_message.to_participant_ids), key_message.payload
        )

    def _host_action(
        self, meeting: Meeting, member: Member, request_id: int, action: pb.HostAction, now_us: int
    ) -> list[Action]:
        if action.kind not in HOST_ACTIONS:
            return self._malformed_input(request_id, pb.ERROR_CODE_MALFORMED, "unknown host action kind")
        if len(action.participant_id) > MAX_PARTICIPANT_ID_CHARS:
            return self._malformed_input(
                request_id,
                pb.ERROR_CODE_MALFORMED,
                f"participant ids are at most {MAX_PARTICIPANT_ID_CHARS} characters",
            )
        effects = meeting.host_action(member, action.kind, action.participant_id, now_us)
        return [messages.send(self.session, pb.ServerMessage(request_id=request_id, ack=pb.Ack())), *effects]

    def _leave(self, meeting: Meeting, member: Member, request_id: int) -> list[Action]:
        self.closed = True
        self._inbound.clear()
        ack = messages.send(self.session, pb.ServerMessage(request_id=request_id, ack=pb.Ack()))
        return [
            ack,
            *meeting.leave(member, pb.ParticipantLeft.REASON_LEFT),
            CloseSession(self.session, 0, "left the meeting"),
        ]

    def _join(self, request_id: int, join: pb.Join, now_us: int) -> list[Action]:
        try:
            grant = self._verifier.verify(join.token, meeting_id=self.meeting_id, now=now_us / 1_000_000)
        except TokenError as exc:
            return self._fatal(request_id, _TOKEN_ERRORS[exc.problem], str(exc))
        if grant.e2ee_required and not join.e2ee:
            return self._fatal(
                request_id,
                pb.ERROR_CODE_E2EE_REQUIRED,
                f"meeting {self.meeting_id!r} requires end-to-end encrypted media; join with e2ee",
            )
        meeting = self._meeting_for(self.meeting_id)
        try:
            member, actions = meeting.join(self.session, request_id, grant, e2ee=join.e2ee, now_us=now_us)
        except RequestRefusedError as exc:
            return self._refused(request_id, exc)
        self.meeting, self.member = meeting, member
        return actions

    # --- errors --------------------------------------------------------------------------------------

    def _refused(self, request_id: int, refusal: RequestRefusedError) -> list[Action]:
        if refusal.fatal:
            return self._fatal(request_id, refusal.code, refusal.message)
        log.debug("request refused: %s", refusal.message, extra=self._log_extra())
        return [messages.error(self.session, request_id, refusal.code, refusal.message, fatal=False)]

    def _malformed_input(self, request_id: int, code: pb.ErrorCode, message: str) -> list[Action]:
        """A non-fatal error, until the session has sent more malformed input than the limit tolerates."""
        self._malformed += 1
        if self._malformed > self._limits.malformed_input_tolerance:
            return self._fatal(request_id, code, f"{message} (too much malformed input)")
        log.info("malformed input: %s", message, extra=self._log_extra())
        return [messages.error(self.session, request_id, code, message, fatal=False)]

    def _fatal(self, request_id: int, code: pb.ErrorCode, message: str) -> list[Action]:
        log.warning("closing session (%s): %s", pb.ErrorCode.Name(code), message, extra=self._log_extra())
        self.closed = True
        self._inbound.clear()
        actions = messages.close(self.session, request_id, code, message)
        if self.member is not None and self.meeting is not None:
            actions += self.meeting.leave(self.member, pb.ParticipantLeft.REASON_DISCONNECTED)
        return actions

    def _bad_frame(self, message: str) -> list[Action]:
        return self._malformed_input(0, pb.ERROR_CODE_BAD_FRAME, message)

    # --- media ---------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes) -> list[Action]:
        """One audio frame: to every subscriber of its track."""
        member = self.member
        if member is None or not member.active:
            return []
        try:
            header = parse_header(data, 0, self._max_payload)
        except FrameError as exc:
            return self._bad_frame(str(exc))
        if len(data) != HEADER_SIZE + header.payload_length:
            return self._bad_frame(f"datagram of {len(data)} bytes does not hold exactly one frame")
        track = member.published.get(header.track_id)
        if track is None and header.track_id in member.muted_tracks:
            return []
        if track is None or track.kind != pb.TRACK_KIND_AUDIO:
            return self._bad_frame(
                f"datagram for track {header.track_id}, not an audio track of this session"
            )
        fanout = track.fanout
        return [SendDatagram(fanout, data)] if fanout else []

    def media_stream_received(
        self, stream_id: int, data: bytes, end_stream: bool, now_us: int
    ) -> list[Action]:
        """Bytes of the publisher's unidirectional stream `stream_id`, which carries one video group."""
        member = self.member
        if member is None or not member.active:
            return []
        inbound = self._inbound.get(stream_id)
        if inbound is None:
            inbound = self._inbound[stream_id] = _Inbound(self._max_payload)
        if end_stream:
            del self._inbound[stream_id]
        if inbound.dropped:
            return []
        actions: list[Action] = []
        try:
            for header, frame in inbound.reader.feed(data):
                action = self._video_frame(member, inbound, stream_id, header, frame)
                if action is not None:
                    actions.append(action)
            if end_stream:
                inbound.reader.close()
        except FrameError as exc:
            inbound.dropped = True
            return actions + self._end_group(inbound, stream_id) + self._bad_frame(str(exc))
        actions += self._owed_keyframe_request(inbound.track, now_us)
        if end_stream:
            actions += self._end_group(inbound, stream_id)
        return actions

    @staticmethod
    def _owed_keyframe_request(track: Track | None, now_us: int) -> list[Action]:
        if track is None or not track.keyframe_owed:
            return []
        request = track.owed_keyframe_request(now_us)
        return [request] if request is not None else []

    @staticmethod
    def _video_frame(
        member: Member, inbound: _Inbound, stream_id: int, header: FrameHeader, frame: bytes
    ) -> Action | None:
        """Forwards one frame of the stream; raises `FrameError` for one that does not belong on it."""
        track = inbound.track
        if track is None:
            track = member.published.get(header.track_id)
            if track is None or track.kind != pb.TRACK_KIND_VIDEO:
                raise FrameError(f"stream for track {header.track_id}, not a video track of this session")
            if not header.keyframe or header.object_seq != 0:
                raise FrameError("a video stream must start with its group's keyframe (object_seq 0)")
            inbound.track = track
            inbound.group = header.group
            return track.start_group(stream_id, header.group, frame)
        if header.track_id != track.track_id or header.group != inbound.group:
            raise FrameError("a video stream carries the frames of one track's group only")
        return track.forward(stream_id, frame)

    def media_stream_reset(self, stream_id: int) -> list[Action]:
        """The publisher abandoned the stream: its group ends where it stopped."""
        inbound = self._inbound.pop(stream_id, None)
        if inbound is None or self.ignoring_input():
            return []
        return self._end_group(inbound, stream_id)

    @staticmethod
    def _end_group(inbound: _Inbound, stream_id: int) -> list[Action]:
        if inbound.track is None:
            return []
        end = inbound.track.end_group(stream_id)
        return [end] if end is not None else []

    def subscriber_lagging(self, track_id: int, now_us: int) -> list[Action]:
        member, meeting = self.member, self.meeting
        if member is None or meeting is None or not member.active:
            return []
        return meeting.subscriber_lagging(member, track_id, now_us)

    def transport_closed(self) -> list[Action]:
        """The session is gone: if it was still in its meeting, it leaves as disconnected."""
        self.closed = True
        self._inbound.clear()
        if self.member is None or self.meeting is None:
            return []
        return self.meeting.leave(self.member, pb.ParticipantLeft.REASON_DISCONNECTED)
