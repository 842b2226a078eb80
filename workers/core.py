"""`WorkerCore`: the sans-I/O heart of a media worker, the one object its network adapter drives.

The adapter numbers each WebTransport session (unique for the worker's lifetime), reports what arrives on
it with the current time in µs, and carries out the returned actions (`darktower.workers.actions`). Input
for a session that is unknown, already closed or closing is ignored, so the adapter need not filter events
that race with a close. Meetings exist on the worker while they have members.
"""

from __future__ import annotations

from typing import Any

from darktower.core.config import LimitsConfig
from darktower.core.tokens import TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.workers.actions import Action
from darktower.workers.admin_state import Oversight
from darktower.workers.errors import WorkerError
from darktower.workers.meeting import Meeting, control_plane_action
from darktower.workers.session import Session


class WorkerCore:
    def __init__(
        self, *, verifier: TokenVerifier, limits: LimitsConfig, oversight: Oversight | None = None
    ) -> None:
        """`oversight`: the removals, ends and join/leave journal shared by this worker's meetings."""
        self.oversight = oversight if oversight is not None else Oversight()
        self._verifier = verifier
        self._limits = limits
        self._sessions: dict[int, Session] = {}
        self._meetings: dict[str, Meeting] = {}

    def session_opened(self, session: int, meeting_id: str, now_us: int) -> list[Action]:
        """A WebTransport session for the meeting its URL names; it must join before anything else."""
        del now_us  # nothing is due until the client speaks
        if session in self._sessions:
            raise WorkerError(f"session {session} is already open")
        self._sessions[session] = Session(
            session, meeting_id, verifier=self._verifier, limits=self._limits, meeting_for=self._meeting
        )
        return []

    def signaling_received(self, session: int, data: bytes, now_us: int) -> list[Action]:
        """Bytes of the session's signaling stream, cut anywhere."""
        state = self._sessions.get(session)
        return state.signaling_received(data, now_us) if state is not None else []

    def datagram_received(self, session: int, data: bytes, now_us: int) -> list[Action]:
        """One datagram: one audio frame."""
        del now_us  # audio forwarding depends on nothing but the frame
        state = self._sessions.get(session)
        return state.datagram_received(data) if state is not None else []

    def media_stream_received(
        self, session: int, stream_id: int, data: bytes, end_stream: bool, now_us: int
    ) -> list[Action]:
        """Bytes of one of the session's unidirectional streams (one video group each)."""
        state = self._sessions.get(session)
        return state.media_stream_received(stream_id, data, end_stream, now_us) if state is not None else []

    def media_stream_reset(self, session: int, stream_id: int, now_us: int) -> list[Action]:
        """The client reset one of its unidirectional streams: that group ends where it stopped."""
        del now_us
        state = self._sessions.get(session)
        return state.media_stream_reset(stream_id) if state is not None else []

    def subscriber_lagging(self, session: int, track_id: int, now_us: int) -> list[Action]:
        """The adapter dropped the session's current group of the video track (backlog over
        `limits.max_queued_ms`): it gets no more of that group, waits for the next one, and the publisher is
        asked for a keyframe."""
        state = self._sessions.get(session)
        return state.subscriber_lagging(track_id, now_us) if state is not None else []

    def session_closed(self, session: int, now_us: int) -> list[Action]:
        """The transport is gone (closed by the client, lost, or closed after `CloseSession`)."""
        del now_us
        state = self._sessions.pop(session, None)
        return state.transport_closed() if state is not None else []

    def dump(self) -> dict[str, Any]:
        """The worker's state for operators: meetings with their participants and track counts."""
        return {
            "meetings": {meeting_id: meeting.dump() for meeting_id, meeting in self._meetings.items()},
            "sessions": len(self._sessions),
        }

    def host_action(
        self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str, now_us: int
    ) -> list[Action]:
        """A host action from the control plane (`darktower.workers.admin`); `RequestRefusedError` when it
        cannot be done (see `control_plane_action`)."""
        return control_plane_action(
            self._meetings.get(meeting_id),
            self.oversight,
            meeting_id,
            kind=kind,
            participant_id=participant_id,
            now_us=now_us,
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """The live meetings with their participants and tracks (`Meeting.snapshot`)."""
        return [meeting.snapshot() for meeting in self._meetings.values()]

    def _meeting(self, meeting_id: str) -> Meeting:
        meeting = self._meetings.get(meeting_id)
        if meeting is None:
            meeting = self._meetings[meeting_id] = Meeting(
                meeting_id, self._limits, self._forget, oversight=self.oversight
            )
        return meeting

    def _forget(self, meeting: Meeting) -> None:
        if self._meetings.get(meeting.meeting_id) is meeting:
            del self._meetings[meeting.meeting_id]
