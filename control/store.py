"""Durable meetings: the `MeetingStore` contract, its errors, and the in-memory store tests use.

A store only records meetings (with their room settings, schedule, invited hosts and end); who is in a
meeting lives in the media workers. `create` is the one place a meeting id is claimed, so two control
processes racing for one id see exactly one success; `end` sets the end once (the first time wins).
Listing is keyset-paginated on (created_at, meeting_id), newest first, so pages stay stable while meetings
are created. The meeting's history, recordings and lobby are `records` (`darktower.control.meeting_records`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from darktower.core.errors import DarkTowerError

if TYPE_CHECKING:
    from darktower.control.meeting_records import MeetingRecords


class ControlError(DarkTowerError):
    """Root of the control plane's errors."""


class StoreError(ControlError):
    """The store cannot be opened or used (unreadable file, schema from a newer server)."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached now (down, refusing connections, timing out); a later try may
    succeed, so callers answer "unavailable" rather than treating it as a bug."""


class MeetingExistsError(ControlError):
    """`create` was given an id that is already taken."""

    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"meeting {meeting_id!r} already exists")
        self.meeting_id = meeting_id


@dataclass(frozen=True, slots=True)
class RoomSettings:
    max_participants: int = 0
    """0: only the workers' `limits.max_participants_per_meeting`."""
    e2ee_required: bool = False
    guests_allowed: bool = True
    """Anyone with the link may join without an account."""
    lobby: bool = False
    """Participants (not hosts) wait until a host admits them."""
    recording_allowed: bool = False


@dataclass(frozen=True, slots=True)
class Meeting:
    meeting_id: str
    title: str
    """Printable text (the API refuses control characters; PostgreSQL cannot store NUL)."""
    created_at: datetime
    """Timezone-aware (UTC)."""
    created_by: str | None = None
    """The user id of the signed-in account that created it; None when created without signing in."""
    settings: RoomSettings = field(default_factory=RoomSettings)
    scheduled_start: datetime | None = None
    """Timezone-aware; joins open a grace window before it (hosts may join any time)."""
    hosts: tuple[str, ...] = ()
    """User ids of invited hosts (the creator is always a host)."""
    ended_at: datetime | None = None

    def is_host(self, user_id: str | None) -> bool:
        return user_id is not None and (user_id == self.created_by or user_id in self.hosts)


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where a page of `list_for_user` ended: the next page starts after this meeting."""

    created_at: datetime
    meeting_id: str


class MeetingStore(Protocol):
    @property
    def records(self) -> MeetingRecords:
        """History, recordings and lobby requests, kept in the same database."""

    async def create(self, meeting: Meeting) -> None:
        """Records `meeting`; raises MeetingExistsError when its id is taken."""

    async def get(self, meeting_id: str) -> Meeting | None:
        """The meeting with this id, or None."""

    async def update(self, meeting: Meeting) -> bool:
        """Replaces the title, settings, schedule and hosts of the meeting with `meeting`'s id (never its
        creation or end); False when there is no such meeting."""

    async def end(self, meeting_id: str, at: datetime) -> Meeting | None:
        """Marks the meeting ended at `at` unless it already was (the first end is kept); the meeting as it
        is now, or None when there is none."""

    async def list_for_user(self, user_id: str, *, limit: int, after: PageCursor | None) -> list[Meeting]:
        """Meetings the user created or hosts, newest first, at most `limit`, after `after`."""

    async def close(self) -> None:
        """Releases the store's resources; the store is unusable afterwards."""


class InMemoryMeetingStore:
    """A `MeetingStore` that forgets everything when the process ends."""

    def __init__(self) -> None:
        from darktower.control.meeting_records import InMemoryMeetingRecords  # noqa: PLC0415 (cycle)

        self._meetings: dict[str, Meeting] = {}
        self._records = InMemoryMeetingRecords()

    @property
    def records(self) -> MeetingRecords:
        return self._records

    async def create(self, meeting: Meeting) -> None:
        if meeting.meeting_id in self._meetings:
            raise MeetingExistsError(meeting.meeting_id)
        self._meetings[meeting.meeting_id] = meeting

    async def get(self, meeting_id: str) -> Meeting | None:
        return self._meetings.get(meeting_id)

    async def update(self, meeting: Meeting) -> bool:
        current = self._meetings.get(meeting.meeting_id)
        if current is None:
            return False
        self._meetings[meeting.meeting_id] = replace(
            meeting, created_at=current.created_at, created_by=current.created_by, ended_at=current.ended_at
        )
        return True

    async def end(self, meeting_id: str, at: datetime) -> Meeting | None:
        current = self._meetings.get(meeting_id)
        if current is not None and current.ended_at is None:
            current = self._meetings[meeting_id] = replace(current, ended_at=at)
        return current

    async def list_for_user(self, user_id: str, *, limit: int, after: PageCursor | None) -> list[Meeting]:
        mine = sorted(
            (m for m in self._meetings.values() if m.is_host(user_id)),
            key=lambda m: (m.created_at, m.meeting_id),
            reverse=True,
        )
        if after is not None:
            mine = [m for m in mine if (m.created_at, m.meeting_id) < (after.created_at, after.meeting_id)]
        return mine[:limit]

    async def close(self) -> None:
        self._meetings.clear()
