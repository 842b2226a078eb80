"""Join tokens: short-lived ES256 JWTs the control plane signs and the workers verify.

A token names one meeting, one participant and what it may do. Workers hold only the public key, so a
compromised worker cannot mint tokens. Verification takes the current time as an argument (no clock reads),
which keeps expiry testable without waiting.

Claims: `iss` (configured issuer), `aud` ("darktower-media"), `sub` (participant id), `mid` (meeting id),
`name` (display name), `pub` / `sub_ok` (may publish / may subscribe), `role` (host, participant or
viewer: what the worker lets it do to others), `e2ee` (the meeting requires end-to-end encrypted media),
`max` (optional: the meeting's own participant limit), `iat`, `exp`, `jti`.
"""

from __future__ import annotations

import enum
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core.errors import DarkTowerError

AUDIENCE: Final = "darktower-media"
ALGORITHM: Final = "ES256"


class TokenProblem(enum.Enum):
    MISSING = "missing"
    EXPIRED = "expired"
    INVALID = "invalid"
    WRONG_MEETING = "wrong_meeting"


class Role(enum.StrEnum):
    """A participant's standing in a meeting, carried in its grant and enforced by the worker."""

    HOST = "host"
    """May mute, remove, lock and end for everyone."""
    PARTICIPANT = "participant"
    VIEWER = "viewer"
    """Receives only; its grant never allows publishing."""


class TokenError(DarkTowerError):
    """A join token was refused; `problem` says why in a form that maps onto a wire error code."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """What a verified join token allows."""

    meeting_id: str
    participant_id: str
    display_name: str
    can_publish: bool
    can_subscribe: bool
    expires_at: int
    """Unix seconds."""
    token_id: str
    role: Role = Role.PARTICIPANT
    e2ee_required: bool = False
    """The meeting admits only clients that encrypt their media end to end."""
    max_participants: int = 0
    """The meeting's own participant limit (0: only the worker's `limits.max_participants_per_meeting`)."""


class TokenSigner:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey, issuer: str, ttl_s: int) -> None:
        self._key = private_key
        self._issuer = issuer
        self._ttl_s = ttl_s

    def sign(
        self,
        *,
        meeting_id: str,
        participant_id: str,
        display_name: str,
        can_publish: bool,
        can_subscribe: bool,
        now: float,
        role: Role = Role.PARTICIPANT,
        e2ee_required: bool = False,
        max_participants: int = 0,
    ) -> tuple[str, JoinGrant]:
        issued = int(now)
        grant = JoinGrant(
            meeting_id=meeting_id,
            participant_id=participant_id,
            display_name=display_name,
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            expires_at=issued + self._ttl_s,
            token_id=secrets.token_urlsafe(12),
            role=role,
            e2ee_required=e2ee_required,
            max_participants=max_participants,
        )
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": participant_id,
            "mid": meeting_id,
            "name": display_name,
            "pub": can_publish,
            "sub_ok": can_subscribe,
            "role": role.value,
            "e2ee": e2ee_required,
            "iat": issued,
            "exp": grant.expires_at,
            "jti": grant.token_id,
        }
        if max_participants:
            claims["max"] = max_participants
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), grant


class TokenVerifier:
    def __init__(self, public_key: ec.EllipticCurvePublicKey, issuer: str, leeway_s: int = 5) -> None:
        self._key = public_key
        self._issuer = issuer
        self._leeway_s = leeway_s

    def verify(self, token: str, *, meeting_id: str, now: float) -> JoinGrant:
        """Returns the grant, or raises TokenError (missing, invalid, expired, or for another meeting)."""
        if not token:
            raise TokenError(TokenProblem.MISSING, "no join token given")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "iat", "sub", "aud", "iss", "jti"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(TokenProblem.INVALID, f"join token rejected: {exc}") from None
        grant = _grant_from_claims(claims)
        if now > grant.expires_at + self._leeway_s:
            raise TokenError(TokenProblem.EXPIRED, f"join token expired {int(now - grant.expires_at)} s ago")
        if grant.meeting_id != meeting_id:
            raise TokenError(TokenProblem.WRONG_MEETING, "join token is for another meeting")
        return grant


def _grant_from_claims(claims: dict[str, Any]) -> JoinGrant:
    fields = {
        "sub": str,
        "mid": str,
        "name": str,
        "pub": bool,
        "sub_ok": bool,
        "role": str,
        "e2ee": bool,
        "exp": int,
        "jti": str,
    }
    for name, kind in fields.items():
        if not isinstance(claims.get(name), kind):
            raise TokenError(
                TokenProblem.INVALID, f"join token claim {name!r} is missing or not a {kind.__name__}"
            )
    max_participants = claims.get("max", 0)
    if not isinstance(max_participants, int) or isinstance(max_participants, bool) or max_participants < 0:
        raise TokenError(TokenProblem.INVALID, "join token claim 'max' is not a non-negative int")
    try:
        role = Role(claims["role"])
    except ValueError:
        raise TokenError(
            TokenProblem.INVALID, f"join token claim 'role' is not one of {[r.value for r in Role]}"
        ) from None
    return JoinGrant(
        meeting_id=claims["mid"],
        participant_id=claims["sub"],
        display_name=claims["name"],
        can_publish=claims["pub"],
        can_subscribe=claims["sub_ok"],
        expires_at=claims["exp"],
        token_id=claims["jti"],
        role=role,
        e2ee_required=claims["e2ee"],
        max_participants=max_participants,
    )


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Reads the PEM P-256 key at `path`, creating it (mode 0600) when absent, so restarts keep tokens valid."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise DarkTowerError(f"{path}: join-token signing key must be an EC P-256 private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def signing_key_path(data_dir: str, configured: str) -> Path:
    """The configured key file, or the one the supervisor keeps in the data directory."""
    return Path(configured) if configured else Path(data_dir) / "signing-key.pem"
