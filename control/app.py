"""The control plane's HTTP API: create and look up meetings, hand out join tokens, serve the web app.

Every refusal has the body `{"error": {"code": "<snake_case>", "message": "..."}}` and a 4xx status; no input,
however malformed, produces a 500. Codes: `invalid_request` (422, the message names the field and why),
`unsupported_media_type` (415, a body that is not declared as JSON), `body_too_large` (413),
`meeting_exists` (409), `meeting_not_found` (404), `not_found` / `method_not_allowed` (unknown routes),
`certificates_unavailable` (503, the self-signed certificate store cannot be read).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from darktower.control.schemas import (
    MEETING_ID_PATTERN,
    CertificateHash,
    CreateMeetingRequest,
    JoinRequest,
    JoinResponse,
    MeetingResponse,
    RequestBody,
    describe_validation_error,
)
from darktower.control.store import ControlError, Meeting, MeetingExistsError, MeetingStore
from darktower.core.certs import CertificateError
from darktower.core.config import Config, ConfigError
from darktower.core.tokens import TokenSigner

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 16 * 1024
"""Far above any valid body; larger ones are refused before they are parsed."""

_DEFAULT_WEB_ROOT: Final = Path(__file__).resolve().parents[1] / "client" / "web" / "dist"
_MEETING_ID_RE: Final = re.compile(MEETING_ID_PATTERN)

_B = TypeVar("_B", bound=RequestBody)


class ApiError(ControlError):
    """A refusal the API reports as `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def web_root_for(config: Config) -> Path | None:
    """The directory of the browser app to serve, or None; a configured one that is missing is an error."""
    if config.server.web_root:
        root = Path(config.server.web_root)
        if not root.is_dir():
            raise ConfigError(f"server.web_root: {root} is not a directory")
        return root
    return _DEFAULT_WEB_ROOT if _DEFAULT_WEB_ROOT.is_dir() else None


def url_host(host: str) -> str:
    """`host` as it goes into a URL authority (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def create_app(
    *,
    config: Config,
    signer: TokenSigner,
    store: MeetingStore,
    certificate_hashes: Callable[[], list[bytes]],
    quic_port: int,
) -> FastAPI:
    """The API over `store`; tokens from `signer`; URLs name `quic_port` on `server.advertised_host`."""
    app = FastAPI(title="Dark Tower control plane", docs_url=None, redoc_url=None, redirect_slashes=False)
    media_origin = f"https://{url_host(config.server.advertised_host)}:{quic_port}"

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/meetings", status_code=201)
    async def create_meeting(request: Request) -> MeetingResponse:
        body = await _parse_body(request, CreateMeetingRequest, empty_means_object=True)
        meeting = await _create(store, body)
        log.info("meeting created", extra={"meeting_id": meeting.meeting_id})
        return _meeting_response(meeting)

    @app.get("/v1/meetings/{meeting_id}")
    async def get_meeting(meeting_id: str) -> MeetingResponse:
        return _meeting_response(await _existing(store, meeting_id))

    @app.post("/v1/meetings/{meeting_id}/join")
    async def join_meeting(meeting_id: str, request: Request) -> JoinResponse:
        body = await _parse_body(request, JoinRequest, empty_means_object=False)
        meeting = await _existing(store, meeting_id)
        try:
            hashes = certificate_hashes()
        except CertificateError as exc:
            log.exception("cannot read the certificate store", extra={"meeting_id": meeting_id})
            raise ApiError(503, "certificates_unavailable", str(exc)) from None
        participant_id = secrets.token_urlsafe(12)
        token, grant = signer.sign(
            meeting_id=meeting.meeting_id,
            participant_id=participant_id,
            display_name=body.display_name,
            can_publish=body.publish,
            can_subscribe=body.subscribe,
            now=time.time(),
        )
        log.info("join token issued", extra={"meeting_id": meeting_id, "participant_id": participant_id})
        return JoinResponse(
            token=token,
            participant_id=participant_id,
            meeting_id=meeting.meeting_id,
            webtransport_url=f"{media_origin}/meetings/{meeting.meeting_id}",
            certificate_hashes=[CertificateHash(algorithm="sha-256", value=h.hex()) for h in hashes],
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC).isoformat(),
        )

    web_root = web_root_for(config)
    if web_root is not None:
        app.mount("/", _WebApp(directory=web_root, html=True), name="web")
    return app


async def _api_error(_request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return error_response(404, "not_found", f"nothing at {request.url.path}")
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed here")
    return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail))


class _WebApp(StaticFiles):
    """The built single-page app: unknown paths outside the API get `index.html` (client-side routing)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path.split("/", 1)[0] in {"v1", "healthz"}:
                raise
            return await super().get_response("index.html", scope)


async def _parse_body(request: Request, model: type[_B], *, empty_means_object: bool) -> _B:
    content_type = request.headers.get("content-type")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if not empty_means_object:
            raise ApiError(422, "invalid_request", "request body is empty; expected a JSON object")
        raw = bytearray(b"{}")
    elif content_type is not None and not _is_json(content_type):
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be application/json, not {content_type!r}"
        )
    try:
        return model.model_validate_json(bytes(raw))
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", describe_validation_error(exc)) from None


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _create(store: MeetingStore, body: CreateMeetingRequest) -> Meeting:
    # A generated id has 96 random bits: a collision is as unlikely as guessing a join token.
    meeting_id = body.meeting_id if body.meeting_id is not None else secrets.token_urlsafe(12)
    meeting = Meeting(meeting_id=meeting_id, title=body.title, created_at=datetime.now(UTC))
    try:
        await store.create(meeting)
    except MeetingExistsError as exc:
        raise ApiError(409, "meeting_exists", str(exc)) from None
    return meeting


async def _existing(store: MeetingStore, meeting_id: str) -> Meeting:
    meeting = await store.get(meeting_id) if _MEETING_ID_RE.fullmatch(meeting_id) else None
    if meeting is None:
        raise ApiError(404, "meeting_not_found", f"no meeting {meeting_id!r}")
    return meeting


def _meeting_response(meeting: Meeting) -> MeetingResponse:
    return MeetingResponse(
        meeting_id=meeting.meeting_id, title=meeting.title, created_at=meeting.created_at.isoformat()
    )
