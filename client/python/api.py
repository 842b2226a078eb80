"""Async client of the control plane's HTTP API: meetings and join tokens.

Every refusal raises an `ApiError` carrying the API's error code (`meeting_exists`, `meeting_not_found`,
`invalid_request`, ...); an unreachable server raises one with code `unavailable`, and a reply that does not
have the documented shape one with code `bad_response`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from darktower.client.errors import ApiError, MeetingExistsError, MeetingNotFoundError

_ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    "meeting_exists": MeetingExistsError,
    "meeting_not_found": MeetingNotFoundError,
}


@dataclass(frozen=True, slots=True)
class Meeting:
    meeting_id: str
    title: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JoinInfo:
    """What a participant needs to open its media session; the token is short-lived, so use it at once."""

    token: str
    participant_id: str
    meeting_id: str
    webtransport_url: str
    certificate_hashes: list[bytes]
    """SHA-256 hashes of the certificates the media server may present (self-signed mode); empty otherwise."""
    expires_at: datetime


class ControlApi:
    """One HTTP connection pool to a control plane at `base_url` (e.g. `http://127.0.0.1:8080`)."""

    def __init__(
        self, base_url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_meeting(self, meeting_id: str | None = None, title: str | None = None) -> Meeting:
        """Creates a meeting; without `meeting_id` the server picks one. Raises `MeetingExistsError`."""
        body: dict[str, str] = {}
        if meeting_id is not None:
            body["meeting_id"] = meeting_id
        if title is not None:
            body["title"] = title
        return _meeting(await self._request("POST", "/v1/meetings", body))

    async def get_meeting(self, meeting_id: str) -> Meeting:
        """Raises `MeetingNotFoundError` for an unknown meeting."""
        return _meeting(await self._request("GET", f"/v1/meetings/{meeting_id}"))

    async def ensure_meeting(self, meeting_id: str, title: str | None = None) -> Meeting:
        """The meeting `meeting_id`, created when it does not exist yet (by this caller or a concurrent one)."""
        try:
            return await self.create_meeting(meeting_id, title)
        except MeetingExistsError:
            return await self.get_meeting(meeting_id)

    async def join(
        self, meeting_id: str, display_name: str, *, publish: bool = True, subscribe: bool = True
    ) -> JoinInfo:
        """A fresh join token for a new participant of `meeting_id`."""
        data = await self._request(
            "POST",
            f"/v1/meetings/{meeting_id}/join",
            {"display_name": display_name, "publish": publish, "subscribe": subscribe},
        )
        try:
            hashes = [
                bytes.fromhex(entry["value"])
                for entry in data["certificate_hashes"]
                if entry["algorithm"] == "sha-256"
            ]
            return JoinInfo(
                token=str(data["token"]),
                participant_id=str(data["participant_id"]),
                meeting_id=str(data["meeting_id"]),
                webtransport_url=str(data["webtransport_url"]),
                certificate_hashes=hashes,
                expires_at=datetime.fromisoformat(data["expires_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError("bad_response", f"join reply lacks or garbles {exc}") from None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ApiError("unavailable", f"{method} {path}: {exc!r}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            if not isinstance(data, dict):
                raise ApiError(
                    "bad_response", f"{method} {path}: reply is not a JSON object", response.status_code
                )
            return data
        code, message = _error_of(data, response)
        raise _ERRORS_BY_CODE.get(code, ApiError)(code, message, response.status_code)


def _error_of(data: object, response: httpx.Response) -> tuple[str, str]:
    """The `{"error": {"code", "message"}}` of a refusal, or a code made from the status when it has none."""
    if isinstance(data, dict) and isinstance(error := data.get("error"), dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and code:
            return code, str(message or "")
    return f"http_{response.status_code}", response.text[:200]


def _meeting(data: dict[str, Any]) -> Meeting:
    try:
        return Meeting(
            meeting_id=str(data["meeting_id"]),
            title=str(data.get("title") or ""),
            created_at=datetime.fromisoformat(data["created_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError("bad_response", f"meeting reply lacks or garbles {exc}") from None
