"""What every route of the control API shares: refusals as `{"error": {"code", "message"}}`, strict JSON
bodies, the caller's address and bearer token, and how the layers' errors become responses.

Errors of the layers below map onto one status and code each, so no route has to remember them:
`invalid_request` (422, also for parameters FastAPI itself validates), `internal_error` (500: a bug, logged
with its traceback; the body never carries details), `client_disconnected` (400, the client went away while
its body was read: nobody reads the answer, and it is no server error),
`store_unavailable` (503, PostgreSQL or Redis cannot be reached now: try again),
`rate_limited` (429 with `Retry-After`), `rate_limiter_unavailable` (503, when configured to refuse while
the limiter's store is down), `token_expired` / `invalid_token` (401 with `WWW-Authenticate: Bearer`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Final, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from darktower.control.access_tokens import AccessTokenError
from darktower.control.metrics import note_error_code
from darktower.control.ratelimit import RateLimitedError, RateLimiterUnavailableError
from darktower.control.schemas import RequestBody, describe_validation_error
from darktower.control.store import ControlError, StoreUnavailableError

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 16 * 1024
"""Far above any valid body; larger ones are refused before they are parsed."""

_B = TypeVar("_B", bound=RequestBody)


class ApiError(ControlError):
    """A refusal the API reports as `{"error": {"code", "message"}}` with `status` (and `headers`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    request: Request | None = None,
) -> JSONResponse:
    """The refusal's response; with `request`, its code is also counted by `/metrics`."""
    if request is not None:
        note_error_code(request.scope, code)
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    handlers = {
        ApiError: _api_error,
        HTTPException: _http_error,
        StoreUnavailableError: _store_unavailable,
        AccessTokenError: _access_token_refused,
        RateLimitedError: _rate_limited,
        RateLimiterUnavailableError: _rate_limiter_unavailable,
        RequestValidationError: _invalid_parameters,
        ClientDisconnect: _client_gone,
        Exception: _internal_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)  # type: ignore[arg-type]


def client_ip(request: Request) -> str:
    """The address the request came from (the proxy's, behind one)."""
    return request.client.host if request.client is not None else "unknown"


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, None without the header; AccessTokenError when the
    header is there but is not a bearer token."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AccessTokenError("the Authorization header must be `Bearer <access token>`")
    return token.strip()


async def parse_body(request: Request, model: type[_B], *, empty_means_object: bool) -> _B:
    """The request's JSON body as `model`; ApiError (413, 415, 422) otherwise."""
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


async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers, request=request)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return error_response(404, "not_found", f"nothing at {request.url.path}", request=request)
    if exc.status_code == 405:
        return error_response(
            405, "method_not_allowed", f"{request.method} is not allowed here", exc.headers, request=request
        )
    return error_response(
        exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers, request=request
    )


async def _store_unavailable(request: Request, exc: StoreUnavailableError) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "store_unavailable", f"{exc}; try again shortly", request=request)


async def _access_token_refused(request: Request, exc: AccessTokenError) -> Response:
    code = "token_expired" if exc.expired else "invalid_token"
    challenge = f'Bearer error="invalid_token", error_description="{code}"'
    return error_response(401, code, str(exc), {"WWW-Authenticate": challenge}, request=request)


async def _rate_limited(request: Request, exc: RateLimitedError) -> Response:
    retry_after = max(1, math.ceil(exc.retry_after_s))
    return error_response(429, "rate_limited", str(exc), {"Retry-After": str(retry_after)}, request=request)


async def _rate_limiter_unavailable(request: Request, exc: RateLimiterUnavailableError) -> Response:
    return error_response(503, "rate_limiter_unavailable", str(exc), request=request)


async def _invalid_parameters(request: Request, exc: RequestValidationError) -> Response:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request", request=request)


async def _client_gone(request: Request, _exc: ClientDisconnect) -> Response:
    log.info("%s %s: the client disconnected before its request was read", request.method, request.url.path)
    return error_response(
        400, "client_disconnected", "the request ended before its body did", request=request
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(
        500, "internal_error", "the server failed to answer this request; it has been logged", request=request
    )
