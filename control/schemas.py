"""The JSON bodies of the control API and how a bad one is described to the caller.

Bodies are parsed by pydantic's own JSON parser (strict UTF-8, no NaN, lone surrogates refused) straight
into strict models, so every malformed input becomes one `invalid_request` whose message names the field and
the reason (`display_name: String should have at most 64 characters`). Unknown fields are refused: a
misspelt `dispaly_name` must not silently fall back to a default.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
)

MEETING_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"


def printable(value: str) -> str:
    """Refuses control characters: names and titles are shown to other people and written to logs."""
    for char in value:
        if unicodedata.category(char) == "Cc":
            raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _email_address(value: str) -> str:
    """One `@` between a non-empty local part and domain, no spaces or control characters; lower-cased,
    because addresses identify accounts and people do not type them with consistent case."""
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise ValueError("must be an email address (name@domain)")
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain spaces or control characters")
    return value.lower()


EmailAddress = Annotated[StrictStr, Field(max_length=254), AfterValidator(_email_address)]
DisplayName = Annotated[
    StrictStr, Field(min_length=1, max_length=64), AfterValidator(printable), AfterValidator(_not_blank)
]


class RegisterRequest(RequestBody):
    email: EmailAddress
    password: Annotated[StrictStr, Field(min_length=8, max_length=256)]
    display_name: DisplayName | None = None
    """Defaults to the part of the address before `@`."""


class LoginRequest(RequestBody):
    email: EmailAddress
    password: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class RefreshRequest(RequestBody):
    refresh_token: Annotated[StrictStr, Field(min_length=1, max_length=512)]


class CertificateHash(BaseModel):
    algorithm: str
    value: str
    """Lower-case hex."""


class JoinResponse(BaseModel):
    token: str
    participant_id: str
    meeting_id: str
    role: str
    """host, participant or viewer."""
    e2ee_required: bool
    """The worker refuses a Join that does not announce end-to-end encryption."""
    webtransport_url: str
    certificate_hashes: list[CertificateHash]
    expires_at: str


class UserResponse(BaseModel):
    user_id: str
    email: str | None
    display_name: str
    created_at: str
    """ISO 8601 with offset."""


class TokenResponse(BaseModel):
    """A signed-in session: send `access_token` as `Authorization: Bearer`, and trade `refresh_token` for a
    new pair (once: each refresh token works one time) before `refresh_expires_at`."""

    user_id: str
    access_token: str
    token_type: str
    """Always "Bearer"."""
    expires_at: str
    """When the access token expires (ISO 8601)."""
    refresh_token: str
    refresh_expires_at: str


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each offending field (or the body itself) and why, e.g. `title: ...; publish: ...`."""
    parts = []
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            reason = error.get("ctx", {}).get("error", error["msg"])
            parts.append(f"body is not valid JSON: {reason}")
            continue
        where = ".".join(str(item) for item in error["loc"]) or "body"
        message = error["msg"]
        if error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
