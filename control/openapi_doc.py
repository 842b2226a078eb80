"""The OpenAPI document the control plane serves at `/openapi.json`, made to describe what the API really
does.

The routes parse their JSON bodies themselves (`api_common.parse_body`, for precise refusals), so FastAPI
cannot see them: `REQUEST_BODIES` names each route's body model, and `document_api` writes them into the
document. FastAPI's own 422 `HTTPValidationError` is replaced, on every operation, by a `default` response
with the one error shape every refusal has (`ErrorResponse`). The fuzz test checks the served API against
this document, so a body route missing from the table shows up there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from darktower.control.schemas import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    RequestBody,
)

_REF: Final = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str
    """Stable, snake_case: what clients branch on."""
    message: str
    """For people: what was wrong and, where it helps, what to do."""


class ErrorResponse(BaseModel):
    error: ErrorDetail


REQUEST_BODIES: Final[Mapping[tuple[str, str], tuple[type[RequestBody], bool]]] = {
    ("post", "/v1/users"): (RegisterRequest, True),
    ("post", "/v1/auth/login"): (LoginRequest, True),
    ("post", "/v1/auth/refresh"): (RefreshRequest, True),
    ("post", "/v1/auth/logout"): (RefreshRequest, True),
}
"""(method, path template) -> (body model, whether a body is required); the meeting routes' are
`darktower.control.meeting_routes.MEETING_BODIES`."""


def document_api(
    app: FastAPI, bodies: Mapping[tuple[str, str], tuple[type[RequestBody], bool]] = REQUEST_BODIES
) -> None:
    """Makes `app.openapi()` (and so `/openapi.json`) return the corrected document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build(app, bodies)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _build(app: FastAPI, bodies: Mapping[tuple[str, str], tuple[type[RequestBody], bool]]) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _add_schema(schemas, ErrorResponse)
    refusal = {
        "description": "A refusal: the status says what kind, `error.code` exactly why.",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = refusal
            if (method, path) in bodies:
                model, required = bodies[method, path]
                _add_schema(schemas, model)
                operation["requestBody"] = {
                    "required": required,
                    "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
                }
    return document


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
