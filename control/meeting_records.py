"""What the control plane keeps about a meeting besides the meeting itself: its history (who joined and
left, when, as the media workers reported it), its recordings' metadata, and its lobby (participants
waiting for a host to admit them).

The `MeetingRecords` contract makes each step that must be atomic one store operation:
- `record_history` is idempotent: each event carries a `source` unique to where it was reported (worker,
  worker incarnation, sequence number), so a report collected twice (a collector restarted before it
  knew what it had stored) is stored once.
- `decide_lobby_request` decides a waiting request exactly once: of two hosts answering at once, one wins
  and the other sees the decision already made.

Lobby tickets are bearer secrets (whoever holds one gets the join token once admitted), so only their
SHA-256 is stored, like refresh tokens. Implementations: `InMemoryMeetingRecords` (tests, and beside the
in-memory meeting store), `darktower.control.sqlite_meeting_records`,
`darktower.control.postgres_meeting_records`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class HistoryKind(StrEnum):
    JOINED = "joined"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    source: str
    """Unique per report: `<worker>:<incarnation>:<sequence>`."""
    meeting_id: str
    participant_id: str
    display_name: str
    role: str
    kind: HistoryKind
    reason: str
    """Why a participant left (left, disconnected, removed, replaced, ended); empty for a join."""
    at: datetime
    event_id: int = 0
    """Assigned by the store (increasing); 0 before it is stored."""


@dataclass(frozen=True, slots=True)
class Recording:
    recording_id: str
    meeting_id: str
    created_at: datetime
    created_by: str | None
    started_at: datetime
    ended_at: datetime | None
    location: str
    """Where the media is (a URI); Dark Tower records metadata only."""
    size_bytes: int


class LobbyStatus(StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class LobbyRequest:
    request_id: str
    """Public: hosts admit or deny by it."""
    ticket_hash: str
    """SHA-256 (hex) of the secret ticket the waiting participant polls with."""
    meeting_id: str
    participant_id: str
    """The id its join token will carry once admitted."""
    display_name: str
    user_id: str | None
    viewer: bool
    publish: bool
    subscribe: bool
    status: LobbyStatus
    requested_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    """The deciding host's user id (None: decided through the admin channel by no account)."""


class MeetingRecords(Protocol):
    async def record_history(self, events: list[HistoryEvent]) -> int:
        """Stores the events whose `source` is new; how many were."""

    async def history(self, meeting_id: str, *, limit: int, after: int = 0) -> list[HistoryEvent]:
        """The meeting's events with `event_id` > `after`, in the order they were stored, at most `limit`."""

    async def add_recording(self, recording: Recording) -> None: ...

    async def recordings(self, meeting_id: str) -> list[Recording]:
        """The meeting's recordings by start time."""

    async def add_lobby_request(self, request: LobbyRequest) -> None: ...

    async def lobby_request(self, meeting_id: str, ticket_hash: str) -> LobbyRequest | None: ...

    async def waiting(self, meeting_id: str, *, limit: int) -> list[LobbyRequest]:
        """The requests still waiting, oldest first."""

    async def decide_lobby_request(
        self, meeting_id: str, request_id: str, *, status: LobbyStatus, by: str | None, at: datetime
    ) -> tuple[LobbyRequest | None, bool]:
        """Decides a waiting request: (the request as it is now, whether this call decided it); (None,
        False) when the meeting has no such request."""


class InMemoryMeetingRecords:
    """`MeetingRecords` that forget everything when the process ends."""

    def __init__(self) -> None:
        self._history: list[HistoryEvent] = []
        self._sources: set[str] = set()
        self._recordings: list[Recording] = []
        self._lobby: dict[str, LobbyRequest] = {}

    async def record_history(self, events: list[HistoryEvent]) -> int:
        stored = 0
        for event in events:
            if event.source in self._sources:
                continue
            self._sources.add(event.source)
            self._history.append(replace(event, event_id=len(self._history) + 1))
            stored += 1
        return stored

    async def history(self, meeting_id: str, *, limit: int, after: int = 0) -> list[HistoryEvent]:
        found = [e for e in self._history if e.meeting_id == meeting_id and e.event_id > after]
        return found[:limit]

    async def add_recording(self, recording: Recording) -> None:
        self._recordings.append(recording)

    async def recordings(self, meeting_id: str) -> list[Recording]:
        found = [r for r in self._recordings if r.meeting_id == meeting_id]
        return sorted(found, key=lambda r: (r.started_at, r.recording_id))

    async def add_lobby_request(self, request: LobbyRequest) -> None:
        self._lobby[request.request_id] = request

    async def lobby_request(self, meeting_id: str, ticket_hash: str) -> LobbyRequest | None:
        for request in self._lobby.values():
            if request.meeting_id == meeting_id and request.ticket_hash == ticket_hash:
                return request
        return None

    async def waiting(self, meeting_id: str, *, limit: int) -> list[LobbyRequest]:
        found = [
            r for r in self._lobby.values() if r.meeting_id == meeting_id and r.status is LobbyStatus.WAITING
        ]
        return sorted(found, key=lambda r: (r.requested_at, r.request_id))[:limit]

    async def decide_lobby_request(
        self, meeting_id: str, request_id: str, *, status: LobbyStatus, by: str | None, at: datetime
    ) -> tuple[LobbyRequest | None, bool]:
        request = self._lobby.get(request_id)
        if request is None or request.meeting_id != meeting_id:
            return None, False
        if request.status is not LobbyStatus.WAITING:
            return request, False
        decided = self._lobby[request_id] = replace(request, status=status, decided_at=at, decided_by=by)
        return decided, True
