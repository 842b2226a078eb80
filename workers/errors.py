"""The media worker's error family."""

from __future__ import annotations

from darktower.core.errors import DarkTowerError
from darktower.proto import signaling_pb2 as pb


class WorkerError(DarkTowerError):
    """A media worker failure, or a misuse of its sans-I/O core by the adapter driving it."""


class RequestRefusedError(WorkerError):
    """A participant's request cannot be granted; the session answers it with `Error{code}`.

    `fatal` refusals close the session (a full meeting leaves nothing else to do); the others leave the
    session as it was.
    """

    def __init__(self, code: pb.ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
