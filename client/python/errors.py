"""The client's error family: every failure the client library raises on purpose derives from `ClientError`.

Each error carries a machine-readable `code`: the control API's snake_case error code for HTTP failures, the
signaling `ErrorCode` name without its prefix (`unknown_track`, `token_expired`, ...) for refused requests,
so scripts branch on codes and never on messages.
"""

from __future__ import annotations

from darktower.core.errors import DarkTowerError


class ClientError(DarkTowerError):
    """A client operation failed; `code` says why in a form programs compare."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ApiError(ClientError):
    """The control API refused a request or could not be reached; `status` is the HTTP status, if any."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(code, message)
        self.status = status


class MeetingExistsError(ApiError):
    """`POST /v1/meetings` named a meeting that already exists (409 `meeting_exists`)."""


class MeetingNotFoundError(ApiError):
    """The meeting does not exist (404 `meeting_not_found`)."""


class RequestRefusedError(ClientError):
    """The media server answered a signaling request with `Error`; `fatal` means it closes the session."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(code, message)
        self.fatal = fatal


class ConnectionLostError(ClientError):
    """The media session ended (or was never open) while a request was waiting on it."""
