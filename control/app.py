"""The control plane's HTTP API: accounts and sign-in, create and look up meetings, hand out join tokens,
serve the web app.

Every refusal has the body `{"error": {"code": "<snake_case>", "message": "..."}}` and a 4xx or 503 status;
no input, however malformed, produces a 500. Codes: `invalid_request` (422, the message names the field and
why), `unsupported_media_type` (415, a body that is not declared as JSON), `body_too_large` (413),
`meeting_exists` (409), `meeting_not_found` (404), `not_found` / `method_not_allowed` (unknown routes),
`certificates_unavailable` (503, the self-signed certificate store cannot be read), `rate_limited` (429, too
many joins from one address), the codes of `darktower.control.api_common` (stores down, bearer tokens) and
of `darktower.control.auth_api` (accounts, sign-in).

A meeting created with a valid access token records its creator (`created_by`); without one it has none.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from darktower.control.access_tokens import AccessTokens
from darktower.control.accounts import AccountStore, InMemoryAccountStore
from darktower.control.admin_api import LiveMeetingsSource, add_admin_routes
from darktower.control.api_common import ApiError, bearer_token, client_ip, install_error_handlers, parse_body
from darktower.control.auth import AuthService
from darktower.control.auth_api import add_auth_routes
from darktower.control.ephemeral import EphemeralStore
from darktower.control.memory_ephemeral import InMemoryEphemeralStore
from darktower.control.metrics import ControlMetrics, install_metrics
from darktower.control.oidc import OidcClient
from darktower.control.openapi_doc import document_api
from darktower.control.passwords import PasswordHasher
from darktower.control.ratelimit import RateLimiter
from darktower.control.schemas import (
    MEETING_ID_PATTERN,
    CertificateHash,
    CreateMeetingRequest,
    JoinRequest,
    JoinResponse,
    MeetingResponse,
)
from darktower.control.store import Meeting, MeetingExistsError, MeetingStore
from darktower.core.certs import CertificateError
from darktower.core.config import Config, ConfigError
from darktower.core.tokens import TokenSigner
from darktower.workers.shard import owner_index

log = logging.getLogger(__name__)

_DEFAULT_WEB_ROOT: Final = Path(__file__).resolve().parents[1] / "client" / "web" / "dist"
_MEETING_ID_RE: Final = re.compile(MEETING_ID_PATTERN)


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
    owner_ports: Sequence[int] = (),
    accounts: AccountStore | None = None,
    ephemeral: EphemeralStore | None = None,
    access_tokens: AccessTokens | None = None,
    clock: Callable[[], float] = time.time,
    metrics: ControlMetrics | None = None,
    live_meetings: LiveMeetingsSource | None = None,
) -> FastAPI:
    """The API over `store` and `accounts`; join tokens from `signer`, access tokens from `access_tokens`;
    rate limits and OIDC sign-in state in `ephemeral`; URLs name `quic_port` on `server.advertised_host`, or,
    when the workers listen on a port each (`owner_ports[k]` is worker k's), the port of the meeting's owner.

    Left out, `accounts` are kept in memory, `ephemeral` is in-process, and access tokens are signed with
    a key made for this app (they are then valid only here): what a test or a single process needs.
    `metrics` (a fresh set by default) is served at `/metrics`; `live_meetings` feeds the admin view of
    live meetings (`darktower.control.admin_api`; without it that view answers 503)."""
    app = FastAPI(title="Dark Tower control plane", docs_url=None, redoc_url=None, redirect_slashes=False)
    media_host = f"https://{url_host(config.server.advertised_host)}"
    ephemeral = ephemeral if ephemeral is not None else InMemoryEphemeralStore()
    limiter = RateLimiter(ephemeral, config.rate_limits)
    auth = AuthService(
        accounts=accounts if accounts is not None else InMemoryAccountStore(),
        passwords=PasswordHasher(
            time_cost=config.auth.password_hash_time_cost, memory_kib=config.auth.password_hash_memory_kib
        ),
        access_tokens=access_tokens
        or AccessTokens(
            ec.generate_private_key(ec.SECP256R1()), config.auth.issuer, config.auth.access_token_ttl_s
        ),
        refresh_ttl_s=config.auth.refresh_token_ttl_s,
        open_registration=config.auth.open_registration,
        clock=clock,
    )
    oidc = OidcClient(config.oidc, ephemeral, clock=clock) if config.oidc.enabled else None

    install_error_handlers(app)
    add_auth_routes(app, auth=auth, limiter=limiter, oidc=oidc)
    add_admin_routes(app, auth=auth, admins=config.auth.admins, live=live_meetings)
    install_metrics(app, metrics or ControlMetrics())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/meetings", status_code=201)
    async def create_meeting(request: Request) -> MeetingResponse:
        token = bearer_token(request)
        creator = auth.authenticate(token).user_id if token is not None else None
        body = await parse_body(request, CreateMeetingRequest, empty_means_object=True)
        meeting = await _create(store, body, creator)
        log.info("meeting created", extra={"meeting_id": meeting.meeting_id})
        return _meeting_response(meeting)

    @app.get("/v1/meetings/{meeting_id}")
    async def get_meeting(meeting_id: str) -> MeetingResponse:
        return _meeting_response(await _existing(store, meeting_id))

    @app.post("/v1/meetings/{meeting_id}/join")
    async def join_meeting(meeting_id: str, request: Request) -> JoinResponse:
        await limiter.join(client_ip(request))
        body = await parse_body(request, JoinRequest, empty_means_object=False)
        meeting = await _existing(store, meeting_id)
        try:
            hashes = certificate_hashes()
        except CertificateError as exc:
            log.exception("cannot read the certificate store", extra={"meeting_id": meeting_id})
            raise ApiError(503, "certificates_unavailable", str(exc)) from None
        participant_id = secrets.token_urlsafe(12)
        owner = owner_index(meeting.meeting_id, len(owner_ports)) if owner_ports else None
        port = quic_port if owner is None else owner_ports[owner]
        token, grant = signer.sign(
            meeting_id=meeting.meeting_id,
            participant_id=participant_id,
            display_name=body.display_name,
            can_publish=body.publish,
            can_subscribe=body.subscribe,
            now=clock(),
        )
        log.info("join token issued", extra={"meeting_id": meeting_id, "participant_id": participant_id})
        return JoinResponse(
            token=token,
            participant_id=participant_id,
            meeting_id=meeting.meeting_id,
            webtransport_url=f"{media_host}:{port}/meetings/{meeting.meeting_id}",
            certificate_hashes=[CertificateHash(algorithm="sha-256", value=h.hex()) for h in hashes],
            expires_at=datetime.fromtimestamp(grant.expires_at, UTC).isoformat(),
        )

    document_api(app)
    web_root = web_root_for(config)
    if web_root is not None:
        app.mount("/", _WebApp(directory=web_root, html=True), name="web")
    return app


class _WebApp(StaticFiles):
    """The built single-page app: unknown paths outside the API get `index.html` (client-side routing)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path.split("/", 1)[0] in {"v1", "healthz"}:
                raise
            return await super().get_response("index.html", scope)


async def _create(store: MeetingStore, body: CreateMeetingRequest, creator: str | None) -> Meeting:
    # A generated id has 96 random bits: a collision is as unlikely as guessing a join token.
    meeting_id = body.meeting_id if body.meeting_id is not None else secrets.token_urlsafe(12)
    meeting = Meeting(
        meeting_id=meeting_id, title=body.title, created_at=datetime.now(UTC), created_by=creator
    )
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
        meeting_id=meeting.meeting_id,
        title=meeting.title,
        created_at=meeting.created_at.isoformat(),
        created_by=meeting.created_by,
    )
