"""API access tokens: short-lived ES256 JWTs (RFC 9068 profile) that authenticate calls to the control API.

They are signed with the control plane's EC P-256 key (the one that signs join tokens) under another
audience ("darktower-api") and type (`at+jwt`), so an access token is never accepted as a join token or the
other way round. They cannot be revoked, which is why they live at most 15 minutes; signing out revokes the
refresh-token family, and with it every later access token of that sign-in.

Claims: `iss`, `aud`, `sub` (user id), `sid` (the refresh-token family: one sign-in), `iat`, `exp`, `jti`.
Verification takes the current time as an argument (no clock reads).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.control.store import ControlError

AUDIENCE: Final = "darktower-api"
ALGORITHM: Final = "ES256"
JWT_TYPE: Final = "at+jwt"
LEEWAY_S: Final = 5
"""Clock difference tolerated between the control-plane processes that sign and verify."""


class AccessTokenError(ControlError):
    """An access token was refused; `expired` tells the client that refreshing will help."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str
    """The refresh-token family this token was issued from."""
    expires_at: int
    """Unix seconds."""


class AccessTokens:
    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, ttl_s: int) -> None:
        self._key = key
        self._public = key.public_key()
        self._issuer = issuer
        self.ttl_s = ttl_s

    def issue(self, *, user_id: str, session_id: str, now: float) -> tuple[str, AccessClaims]:
        issued = int(now)
        claims = AccessClaims(user_id=user_id, session_id=session_id, expires_at=issued + self.ttl_s)
        payload = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "iat": issued,
            "exp": claims.expires_at,
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"typ": JWT_TYPE})
        return token, claims

    def verify(self, token: str, *, now: float) -> AccessClaims:
        """The token's claims, or AccessTokenError (malformed, forged, another kind of token, expired)."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != JWT_TYPE:
                raise AccessTokenError("not an access token")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "aud", "sub", "sid", "iat", "exp", "jti"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise AccessTokenError(f"access token rejected: {exc}") from None
        user_id, session_id, expires_at = claims["sub"], claims["sid"], claims["exp"]
        if not (isinstance(user_id, str) and isinstance(session_id, str) and type(expires_at) is int):
            raise AccessTokenError("access token claims have the wrong types")
        if now > expires_at + LEEWAY_S:
            raise AccessTokenError(f"access token expired {int(now - expires_at)} s ago", expired=True)
        return AccessClaims(user_id=user_id, session_id=session_id, expires_at=expires_at)
