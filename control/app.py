"""The control plane's HTTP API: accounts and sign-in, meetings (`darktower.control.meeting_routes`), join
tokens, host actions, serve the web app.

Every refusal has the body `{"error": {"code": "<snake_case>", "message": "..."}}` and a 4xx or 503 status;
no input, however malformed, produces a 500. Codes: `invalid_request` (422, the message names the field and
why), `unsupported_media_type` (415, a body that is not declared as JSON), `body_too_large` (413),
`meeting_exists` (409), `meeting_not_found` (404), `not_found` / `method_not_allowed` (unknown routes), those
of `darktower.control.meeting_routes` (hosts, joins, lobby),
`certificates_unavailable` (503, the self-signed certificate store cannot be read), `rate_limited` (429, too
many joins from one address), the codes of `darktower.control.api_common` (stores down, bearer tokens) and
of `darktower.control.auth_api` (accounts, sign-in).

A meeting created with a valid access token records its creator (`created_by`); without one it has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from darktower.control.access_tokens import AccessTokens
from darktower.control.accounts import AccountStore, InMemoryAccountStore
from darktower.control.admin_api import LiveMeetingsSource, add_admin_routes
from darktower.control.api_common import install_error_handlers
from darktower.control.auth import AuthService
from darktower.control.auth_api import add_auth_routes
from darktower.control.discovery import CallerRegion, Discovery, StaticDiscovery, join_target_of
from darktower.control.ephemeral import EphemeralStore
from darktower.control.meeting_history import HistoryCollector
from darktower.control.meeting_routes import MEETING_BODIES, MeetingDeps, add_meeting_routes
from darktower.control.memory_ephemeral import InMemoryEphemeralStore
from darktower.control.metrics import ControlMetrics, install_metrics
from darktower.control.oidc import OidcClient
from darktower.control.openapi_doc import REQUEST_BODIES, document_api
from darktower.control.passwords import PasswordHasher
from darktower.control.ratelimit import RateLimiter
from darktower.control.read_cache import MeetingReadCache
from darktower.control.store import MeetingStore
from darktower.control.worker_admin import WorkerAdmin
from darktower.core.config import Config, ConfigError
from darktower.core.tokens import TokenSigner

log = logging.getLogger(__name__)

_DEFAULT_WEB_ROOT: Final = Path(__file__).resolve().parents[1] / "client" / "web" / "dist"


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
    workers: WorkerAdmin | None = None,
    collect_history: bool = True,
    discovery: Discovery | None = None,
) -> FastAPI:
    """The API over `store` and `accounts`; join tokens from `signer`, access tokens from `access_tokens`;
    rate limits and OIDC sign-in state in `ephemeral`; URLs name `quic_port` on `server.advertised_host`, or,
    when the workers listen on a port each (`owner_ports[k]` is worker k's), the port of the meeting's owner.

    Left out, `accounts` are kept in memory, `ephemeral` is in-process, and access tokens are signed with
    a key made for this app (they are then valid only here): what a test or a single process needs.
    `metrics` (a fresh set by default) is served at `/metrics`; `live_meetings` feeds the admin view of
    live meetings (`darktower.control.admin_api`; by default the workers' admin channel). `discovery`
    picks the node a join goes to (`darktower.control.discovery`; by default this node). A meeting read
    while the durable store is down is answered from the ephemeral cache (`darktower.control.read_cache`).
    `workers` reaches this node's workers (default: their admin sockets in the data dir) for host actions and history, which the
    app collects in the background while it runs (its lifespan) when `collect_history`."""
    workers = workers if workers is not None else WorkerAdmin(config.server.data_dir, config.server.workers)
    history = HistoryCollector(workers, store.records)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        collecting = asyncio.create_task(history.run()) if collect_history else None
        try:
            yield
        finally:
            if collecting is not None:
                collecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collecting

    app = FastAPI(
        title="Dark Tower control plane",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
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
    add_admin_routes(app, auth=auth, admins=config.auth.admins, live=live_meetings or workers)
    app.add_middleware(MeetingReadCache, ephemeral=ephemeral)
    app.add_middleware(CallerRegion)
    install_metrics(app, metrics or ControlMetrics())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    discovery = discovery or StaticDiscovery(
        name="local",
        region=config.discovery.region,
        host=config.server.advertised_host,
        ports=owner_ports or [quic_port],
        certificate_hashes=certificate_hashes,
    )

    add_meeting_routes(
        app,
        MeetingDeps(
            store=store,
            auth=auth,
            signer=signer,
            limiter=limiter,
            workers=workers,
            history=history,
            join_target=join_target_of(discovery),
            clock=clock,
        ),
    )

    document_api(app, {**REQUEST_BODIES, **MEETING_BODIES})
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
