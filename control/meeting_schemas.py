"""The JSON bodies of the meeting routes (`darktower.control.meeting_routes`): strict, unknown fields refused,
each bad body one `invalid_request` naming the field (see `darktower.control.schemas`)."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StrictBool, StrictInt, StrictStr

from darktower.control.schemas import MEETING_ID_PATTERN, DisplayName, RequestBody, printable

MAX_HOSTS: Final = 20
MAX_PARTICIPANTS_LIMIT: Final = 10_000

Title = Annotated[StrictStr, Field(max_length=200), AfterValidator(printable)]
UserId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class SettingsBody(RequestBody):
    max_participants: Annotated[StrictInt, Field(ge=0, le=MAX_PARTICIPANTS_LIMIT)] | None = None
    """0: the server's own limit."""
    e2ee_required: StrictBool | None = None
    guests_allowed: StrictBool | None = None
    lobby: StrictBool | None = None
    recording_allowed: StrictBool | None = None


class CreateMeetingRequest(RequestBody):
    meeting_id: Annotated[StrictStr, Field(pattern=MEETING_ID_PATTERN)] | None = None
    title: Title = ""
    scheduled_start: AwareDatetime | None = None
    settings: SettingsBody = SettingsBody()
    host_user_ids: Annotated[tuple[UserId, ...], Field(max_length=MAX_HOSTS)] = ()


class UpdateMeetingRequest(RequestBody):
    """Fields left out keep their value; `scheduled_start: null` removes the schedule."""

    title: Title | None = None
    scheduled_start: AwareDatetime | None = None
    settings: SettingsBody | None = None
    host_user_ids: Annotated[tuple[UserId, ...], Field(max_length=MAX_HOSTS)] | None = None


class JoinRequest(RequestBody):
    display_name: DisplayName
    publish: StrictBool = True
    subscribe: StrictBool = True
    viewer: StrictBool = False
    """Join as a viewer: receive only."""


class LobbyPollRequest(RequestBody):
    ticket: Annotated[StrictStr, Field(min_length=1, max_length=128)]


class RecordingRequest(RequestBody):
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    location: Annotated[StrictStr, Field(min_length=1, max_length=2048), AfterValidator(printable)]
    size_bytes: Annotated[StrictInt, Field(ge=0, le=2**62)] = 0


class SettingsResponse(BaseModel):
    max_participants: int
    e2ee_required: bool
    guests_allowed: bool
    lobby: bool
    recording_allowed: bool


class MeetingResponse(BaseModel):
    meeting_id: str
    title: str
    created_at: str
    """ISO 8601 with offset."""
    created_by: str | None
    """The user id of the signed-in creator; null when it was created without signing in."""
    scheduled_start: str | None
    ended_at: str | None
    settings: SettingsResponse
    host_user_ids: list[str]


class MeetingListResponse(BaseModel):
    meetings: list[MeetingResponse]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class LobbyWaitingResponse(BaseModel):
    """A join held in the lobby: poll `POST .../lobby/poll` with `ticket` until a host decides."""

    status: str
    """Always "waiting"."""
    request_id: str
    ticket: str


class LobbyEntry(BaseModel):
    request_id: str
    display_name: str
    user_id: str | None
    viewer: bool
    requested_at: str


class LobbyListResponse(BaseModel):
    waiting: list[LobbyEntry]


class HistoryEntry(BaseModel):
    event_id: int
    at: str
    participant_id: str
    display_name: str
    role: str
    kind: str
    """joined or left."""
    reason: str


class HistoryResponse(BaseModel):
    events: list[HistoryEntry]
    next_after: int
    """Pass as `after` for the next page."""


class RecordingResponse(BaseModel):
    recording_id: str
    meeting_id: str
    created_at: str
    created_by: str | None
    started_at: str
    ended_at: str | None
    location: str
    size_bytes: int


class RecordingListResponse(BaseModel):
    recordings: list[RecordingResponse]


class ActionResponse(BaseModel):
    """A host action the meeting's worker carried out (or, for `end`, recorded when nobody is there)."""

    meeting_id: str
    action: str
    participant_id: str | None
