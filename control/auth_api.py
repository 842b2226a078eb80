"""The account and sign-in routes of the control API.

- `POST /v1/users` `{"email", "password" (8..256 chars), "display_name"?}` -> 201 user; 409 `user_exists`,
  403 `registration_closed` (`auth.open_registration = false`).
- `GET /v1/users/me` with `Authorization: Bearer <access token>` -> 200 user; 401 `invalid_token` /
  `token_expired`.
- `POST /v1/auth/login` `{"email", "password"}` -> 200 token pair; 401 `invalid_credentials`.
- `POST /v1/auth/refresh` `{"refresh_token"}` -> 200 the next token pair; 401 `invalid_refresh_token`
  (unknown, expired, signed out, or already used: then the whole session is revoked).
- `POST /v1/auth/logout` `{"refresh_token"}` -> 204, the session is revoked; 401 `invalid_refresh_token`.
- `GET /v1/auth/oidc/start[?login_hint]` -> 302 to the provider's authorization endpoint (passing the
  hint on), with a cookie binding the sign-in to this browser; 404 `oidc_not_configured`.
- `GET /v1/auth/oidc/callback?code&state[&iss]` (where the provider sends the browser back) -> 200 token
  pair; 400 `invalid_oidc_state` (unknown, expired, used, or started in another browser), 401
  `oidc_login_failed` (the provider refused, or its ID token does not hold), 502 `oidc_provider_unavailable`.

Registration, password sign-in and starting an OIDC sign-in are rate limited (429 `rate_limited` with
`Retry-After`). A user is `{"user_id", "email", "display_name", "created_at"}`; a token pair is
`darktower.control.schemas.TokenResponse`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from darktower.control.accounts import AuditAction, AuditOutcome, User, UserExistsError
from darktower.control.api_common import ApiError, bearer_token, client_ip, error_response, parse_body
from darktower.control.auth import (
    AuthService,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    RegistrationClosedError,
    TokenPair,
)
from darktower.control.oidc import OidcClient, OidcError, OidcStateError, OidcUnavailableError
from darktower.control.ratelimit import RateLimiter
from darktower.control.schemas import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserResponse,
)
from darktower.control.store import ControlError

OIDC_PATH: Final = "/v1/auth/oidc"
STATE_COOKIE: Final = "darktower_oidc_state"

_REFUSALS: Final[dict[type[ControlError], tuple[int, str]]] = {
    RegistrationClosedError: (403, "registration_closed"),
    UserExistsError: (409, "user_exists"),
    InvalidCredentialsError: (401, "invalid_credentials"),
    InvalidRefreshTokenError: (401, "invalid_refresh_token"),
}
"""How the account layer's refusals are answered: status and code (the message is the error's)."""
_NO_STORE: Final = {"Cache-Control": "no-store"}
"""On every response that carries tokens (RFC 6749, 5.1)."""


def add_auth_routes(
    app: FastAPI, *, auth: AuthService, limiter: RateLimiter, oidc: OidcClient | None
) -> None:
    for kind, (status, code) in _REFUSALS.items():
        app.add_exception_handler(kind, _refusal(status, code))
    _add_account_routes(app, auth, limiter)
    _add_oidc_routes(app, auth, limiter, oidc)


def _add_account_routes(app: FastAPI, auth: AuthService, limiter: RateLimiter) -> None:
    @app.post("/v1/users", status_code=201)
    async def register(request: Request) -> UserResponse:
        body = await parse_body(request, RegisterRequest, empty_means_object=False)
        ip = client_ip(request)
        await limiter.sign_in(ip)
        name = body.display_name or body.email.partition("@")[0][:64]
        user = await auth.register(email=body.email, password=body.password, display_name=name, ip=ip)
        return _user_response(user)

    @app.get("/v1/users/me")
    async def me(request: Request) -> UserResponse:
        token = bearer_token(request)
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "sign in and send `Authorization: Bearer <access token>`",
                {"WWW-Authenticate": "Bearer"},
            )
        return _user_response(await auth.current_user(token))

    @app.post("/v1/auth/login")
    async def login(request: Request, response: Response) -> TokenResponse:
        body = await parse_body(request, LoginRequest, empty_means_object=False)
        ip = client_ip(request)
        await limiter.sign_in(ip, body.email)
        response.headers.update(_NO_STORE)
        return _token_response(await auth.login(email=body.email, password=body.password, ip=ip))

    @app.post("/v1/auth/refresh")
    async def refresh(request: Request, response: Response) -> TokenResponse:
        body = await parse_body(request, RefreshRequest, empty_means_object=False)
        response.headers.update(_NO_STORE)
        return _token_response(await auth.refresh(refresh_token=body.refresh_token, ip=client_ip(request)))

    @app.post("/v1/auth/logout", status_code=204)
    async def logout(request: Request) -> Response:
        body = await parse_body(request, RefreshRequest, empty_means_object=False)
        await auth.logout(refresh_token=body.refresh_token, ip=client_ip(request))
        return Response(status_code=204)


def _add_oidc_routes(app: FastAPI, auth: AuthService, limiter: RateLimiter, oidc: OidcClient | None) -> None:
    @app.get(f"{OIDC_PATH}/start")
    async def oidc_start(request: Request) -> Response:
        client = _configured(oidc)
        await limiter.sign_in(client_ip(request))
        hint = request.query_params.get("login_hint")
        try:
            url, state = await client.start(login_hint=hint[:256] if hint else None)
        except OidcUnavailableError as exc:
            raise ApiError(502, "oidc_provider_unavailable", str(exc)) from None
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=client.state_ttl_s,
            path=OIDC_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response

    @app.get(f"{OIDC_PATH}/callback")
    async def oidc_callback(request: Request) -> Response:
        client = _configured(oidc)
        ip = client_ip(request)
        try:
            pair = await _finish_oidc(auth, client, request, ip)
        except (OidcError, OidcUnavailableError) as exc:
            await auth.record(AuditAction.OIDC_LOGIN, AuditOutcome.FAILURE, None, ip, str(exc))
            if isinstance(exc, OidcStateError):
                raise ApiError(400, "invalid_oidc_state", str(exc)) from None
            if isinstance(exc, OidcUnavailableError):
                raise ApiError(502, "oidc_provider_unavailable", str(exc)) from None
            raise ApiError(401, "oidc_login_failed", str(exc)) from None
        response = Response(
            _token_response(pair).model_dump_json(), media_type="application/json", headers=_NO_STORE
        )
        response.delete_cookie(STATE_COOKIE, path=OIDC_PATH)
        return response


async def _finish_oidc(auth: AuthService, client: OidcClient, request: Request, ip: str) -> TokenPair:
    query = request.query_params
    state = query.get("state")
    if not state or len(state) > 256:
        raise OidcStateError("the callback carries no state (or not one this server made)")
    bound = request.cookies.get(STATE_COOKIE, "")
    if not hmac.compare_digest(bound.encode(), state.encode()):
        raise OidcStateError(
            "this sign-in was started in another browser (or its cookie expired); start again"
        )
    identity = await client.finish(
        state=state, code=query.get("code"), error=query.get("error"), issuer=query.get("iss")
    )
    return await auth.sign_in_identity(
        issuer=identity.issuer,
        subject=identity.subject,
        email=identity.email,
        display_name=identity.name,
        ip=ip,
    )


def _refusal(status: int, code: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(status, code, str(exc), request=request)

    return handle


def _configured(oidc: OidcClient | None) -> OidcClient:
    if oidc is None:
        raise ApiError(
            404, "oidc_not_configured", "OIDC sign-in is not configured on this server ([oidc] issuer)"
        )
    return oidc


def _user_response(user: User) -> UserResponse:
    return UserResponse(
        user_id=user.user_id,
        email=user.email,
        display_name=user.display_name,
        created_at=user.created_at.isoformat(),
    )


def _token_response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        user_id=pair.user_id,
        access_token=pair.access_token,
        token_type="Bearer",  # noqa: S106 - the token type, not a secret
        expires_at=datetime.fromtimestamp(pair.expires_at, UTC).isoformat(),
        refresh_token=pair.refresh_token,
        refresh_expires_at=pair.refresh_expires_at.isoformat(),
    )
