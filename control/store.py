"""Durable meetings: the `MeetingStore` contract, its errors, and the in-memory store tests use.

A store only records meetings; who is in a meeting lives in the media workers. `create` is the one place a
meeting id is claimed, so two control processes racing for one id see exactly one success.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from darktower.core.errors import DarkTowerError


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
class Meeting:
    meeting_id: str
    title: str
    """Printable text (the API refuses control characters; PostgreSQL cannot store NUL)."""
    created_at: datetime
    """Timezone-aware (UTC)."""
    created_by: str | None = None
    """The user id of the signed-in account that created it; None when created without signing in."""


class MeetingStore(Protocol):
    async def create(self, meeting: Meeting) -> None:
        """Records `meeting`; raises MeetingExistsError when its id is taken."""

    async def get(self, meeting_id: str) -> Meeting | None:
        """The meeting with this id, or None."""

    async def close(self) -> None:
        """Releases the store's resources; the store is unusable afterwards."""


class InMemoryMeetingStore:
    """A `MeetingStore` that forgets everything when the process ends."""

    def __init__(self) -> None:
        self._meetings: dict[str, Meeting] = {}

    async def create(self, meeting: Meeting) -> None:
        if meeting.meeting_id in self._meetings:
            raise MeetingExistsError(meeting.meeting_id)
        self._meetings[meeting.meeting_id] = meeting

    async def get(self, meeting_id: str) -> Meeting | None:
        return self._meetings.get(meeting_id)

    async def close(self) -> None:
        self._meetings.clear()
