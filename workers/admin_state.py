"""What a worker keeps about host and admin actions beyond one `Meeting` object, and whom it tells about
joins and leaves.

A `Meeting` lives only while it has members, but two host actions must outlast it: a removed participant's
token must not join again, and an ended meeting must refuse every later join. `Sanctions` holds both, each
only as long as a token that could be used against it may still verify, so it stays bounded: a removal until
the removed grant expires, an end for `ENDED_REMEMBERED_S` (longer than any join token lives:
`auth.join_token_ttl_s` is at most 3600 s). Expired entries are dropped as new ones come in.

`Journal` is where the meeting reports joins and leaves (the worker's history feed): the sans-I/O meeting
only names what happened; an adapter's journal stamps the time.

Sans-I/O: times are passed in (Unix seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

from darktower.core.tokens import JoinGrant
from darktower.proto import signaling_pb2 as pb
from darktower.workers.errors import RequestRefusedError

ENDED_REMEMBERED_S: Final = 3600 + 60
"""How long an ended meeting refuses joins: the longest join-token lifetime plus the verifier's leeway."""
REMOVAL_MARGIN_S: Final = 60
"""A removal outlives the removed grant's expiry by this much (the verifier accepts a little past it)."""
_PURGE_EVERY: Final = 256
"""Expired entries are swept once this many were added since the last sweep."""


class Journal(Protocol):
    """Receives the joins and leaves of every meeting of the worker, as they happen."""

    def joined(self, meeting_id: str, grant: JoinGrant) -> None: ...

    def left(self, meeting_id: str, participant_id: str, reason: str) -> None:
        """`reason`: left, disconnected, removed, replaced or ended."""


class Sanctions:
    """Removed participants and ended meetings, each remembered until it can no longer matter."""

    def __init__(self) -> None:
        self._removed: dict[tuple[str, str], float] = {}
        """(meeting id, participant id) -> until (Unix seconds)."""
        self._ended: dict[str, float] = {}
        self._added = 0

    def remove(self, meeting_id: str, participant_id: str, until_s: float, now_s: float) -> None:
        self._removed[meeting_id, participant_id] = until_s
        self._note_added(now_s)

    def end(self, meeting_id: str, now_s: float) -> None:
        self._ended[meeting_id] = now_s + ENDED_REMEMBERED_S
        self._note_added(now_s)

    def ended(self, meeting_id: str, now_s: float) -> bool:
        until = self._ended.get(meeting_id)
        return until is not None and now_s <= until

    def check_join(self, meeting_id: str, participant_id: str, now_s: float) -> None:
        """Raises the fatal refusal of a join that a host action forbids."""
        if self.ended(meeting_id, now_s):
            raise RequestRefusedError(pb.ERROR_CODE_ENDED, f"meeting {meeting_id!r} has ended", fatal=True)
        until = self._removed.get((meeting_id, participant_id))
        if until is not None and now_s <= until:
            raise RequestRefusedError(
                pb.ERROR_CODE_REMOVED, "a host removed this participant from the meeting", fatal=True
            )

    def __len__(self) -> int:
        return len(self._removed) + len(self._ended)

    def _note_added(self, now_s: float) -> None:
        self._added += 1
        if self._added < _PURGE_EVERY:
            return
        self._added = 0
        self._removed = {key: until for key, until in self._removed.items() if until >= now_s}
        self._ended = {key: until for key, until in self._ended.items() if until >= now_s}


@dataclass(slots=True)
class Oversight:
    """What every meeting of one worker shares: the sanctions, and the journal (None: nobody listens)."""

    sanctions: Sanctions = field(default_factory=Sanctions)
    journal: Journal | None = None
