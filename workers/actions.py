"""What the sans-I/O worker core asks its adapter to do: the core's only output.

Fan-out actions name every receiving session in one tuple and carry the publisher's frame bytes unchanged,
so forwarding one frame costs one action whatever the number of subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SendSignaling:
    """Write `data` (one or more length-delimited `ServerMessage`s) on the session's signaling stream."""

    session: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send the audio frame `data` as one datagram to each session."""

    sessions: tuple[int, ...]
    data: bytes | memoryview
    """A view (into another worker's media ring) is valid only until the action has been carried out."""


@dataclass(frozen=True, slots=True)
class SendVideo:
    """Write one video frame to each session's unidirectional stream for (`track_id`, `group`).

    With `starts_group` the adapter first ends (FIN) the session's previous stream for the track, if any, and
    opens a new one. Otherwise the frame goes on the session's current stream for the track; the core lists
    only sessions that were sent this group's start.
    """

    sessions: tuple[int, ...]
    track_id: int
    group: int
    data: bytes | memoryview
    starts_group: bool


@dataclass(frozen=True, slots=True)
class EndVideoGroup:
    """The group is over (publisher FIN, reset or malformed stream, unpublish, unsubscribe): FIN the
    sessions' streams for (`track_id`, `group`)."""

    sessions: tuple[int, ...]
    track_id: int
    group: int


@dataclass(frozen=True, slots=True)
class CloseSession:
    """Flush the session, close it with `code` (an `ErrorCode` value, 0 after a Leave) and `reason`, then
    report it with `WorkerCore.session_closed`."""

    session: int
    code: int
    reason: str


Action = SendSignaling | SendDatagram | SendVideo | EndVideoGroup | CloseSession
