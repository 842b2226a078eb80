"""How meetings, recordings and join grants are shown to API callers (the response bodies of
`darktower.control.meeting_routes`)."""

from __future__ import annotations

from datetime import UTC, datetime

from darktower.control.meeting_records import Recording
from darktower.control.meeting_schemas import MeetingResponse, RecordingResponse, SettingsResponse
from darktower.control.schemas import CertificateHash, JoinResponse
from darktower.control.store import Meeting
from darktower.core.tokens import Role, TokenSigner


def meeting_response(meeting: Meeting) -> MeetingResponse:
    settings = meeting.settings
    return MeetingResponse(
        meeting_id=meeting.meeting_id,
        title=meeting.title,
        created_at=meeting.created_at.isoformat(),
        created_by=meeting.created_by,
        scheduled_start=_time(meeting.scheduled_start),
        ended_at=_time(meeting.ended_at),
        settings=SettingsResponse(
            max_participants=settings.max_participants,
            e2ee_required=settings.e2ee_required,
            guests_allowed=settings.guests_allowed,
            lobby=settings.lobby,
            recording_allowed=settings.recording_allowed,
        ),
        host_user_ids=list(meeting.hosts),
    )


def recording_response(recording: Recording) -> RecordingResponse:
    return RecordingResponse(
        recording_id=recording.recording_id,
        meeting_id=recording.meeting_id,
        created_at=recording.created_at.isoformat(),
        created_by=recording.created_by,
        started_at=recording.started_at.isoformat(),
        ended_at=_time(recording.ended_at),
        location=recording.location,
        size_bytes=recording.size_bytes,
    )


def issue_join(
    signer: TokenSigner,
    meeting: Meeting,
    *,
    participant_id: str,
    display_name: str,
    role: Role,
    publish: bool,
    subscribe: bool,
    url: str,
    hashes: list[bytes],
    now: float,
) -> JoinResponse:
    """A join token for the participant with the meeting's E2EE requirement and participant limit."""
    token, grant = signer.sign(
        meeting_id=meeting.meeting_id,
        participant_id=participant_id,
        display_name=display_name,
        can_publish=publish,
        can_subscribe=subscribe,
        now=now,
        role=role,
        e2ee_required=meeting.settings.e2ee_required,
        max_participants=meeting.settings.max_participants,
    )
    return JoinResponse(
        token=token,
        participant_id=participant_id,
        meeting_id=meeting.meeting_id,
        role=role.value,
        e2ee_required=meeting.settings.e2ee_required,
        webtransport_url=url,
        certificate_hashes=[CertificateHash(algorithm="sha-256", value=h.hex()) for h in hashes],
        expires_at=datetime.fromtimestamp(grant.expires_at, UTC).isoformat(),
    )


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
