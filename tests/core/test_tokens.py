"""Join tokens: what a worker accepts and exactly why it refuses the rest."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core.tokens import (
    Role,
    TokenError,
    TokenProblem,
    TokenSigner,
    TokenVerifier,
    load_or_create_signing_key,
)

NOW = 1_800_000_000.0


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign(key: ec.EllipticCurvePrivateKey, meeting: str = "m1", ttl: int = 60) -> str:
    token, _ = TokenSigner(key, "darktower", ttl).sign(
        meeting_id=meeting,
        participant_id="p1",
        display_name="Ada",
        can_publish=True,
        can_subscribe=False,
        now=NOW,
    )
    return token


def test_a_valid_token_yields_its_grant(key: ec.EllipticCurvePrivateKey) -> None:
    grant = TokenVerifier(key.public_key(), "darktower").verify(sign(key), meeting_id="m1", now=NOW + 10)
    assert (grant.meeting_id, grant.participant_id, grant.display_name) == ("m1", "p1", "Ada")
    assert grant.can_publish
    assert not grant.can_subscribe


@pytest.mark.parametrize(
    ("token_of", "meeting", "now", "problem"),
    [
        (lambda k: "", "m1", NOW, TokenProblem.MISSING),
        (sign, "m1", NOW + 66, TokenProblem.EXPIRED),
        (sign, "m2", NOW, TokenProblem.WRONG_MEETING),
        (lambda k: sign(ec.generate_private_key(ec.SECP256R1())), "m1", NOW, TokenProblem.INVALID),
        (lambda k: "not.a.jwt", "m1", NOW, TokenProblem.INVALID),
        (
            lambda k: jwt.encode({"sub": "p1", "mid": "m1"}, "s" * 32, algorithm="HS256"),
            "m1",
            NOW,
            TokenProblem.INVALID,
        ),
    ],
    ids=["missing", "expired", "wrong-meeting", "forged", "garbage", "hmac-confusion"],
)
def test_refused_tokens_say_why(
    key: ec.EllipticCurvePrivateKey, token_of: object, meeting: str, now: float, problem: TokenProblem
) -> None:
    verifier = TokenVerifier(key.public_key(), "darktower")
    with pytest.raises(TokenError) as caught:
        verifier.verify(token_of(key), meeting_id=meeting, now=now)  # type: ignore[operator]
    assert caught.value.problem is problem


def test_a_token_from_another_issuer_is_invalid(key: ec.EllipticCurvePrivateKey) -> None:
    token, _ = TokenSigner(key, "elsewhere", 60).sign(
        meeting_id="m1", participant_id="p", display_name="x", can_publish=True, can_subscribe=True, now=NOW
    )
    with pytest.raises(TokenError, match="issuer"):
        TokenVerifier(key.public_key(), "darktower").verify(token, meeting_id="m1", now=NOW)


def test_the_signing_key_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing-key.pem"
    first = load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_signing_key(path)
    assert first.private_numbers() == again.private_numbers()


def test_role_and_e2ee_policy_travel_in_the_grant(key: ec.EllipticCurvePrivateKey) -> None:
    token, signed = TokenSigner(key, "darktower", 60).sign(
        meeting_id="m1",
        participant_id="p1",
        display_name="Ada",
        can_publish=True,
        can_subscribe=True,
        now=NOW,
        role=Role.HOST,
        e2ee_required=True,
    )
    grant = TokenVerifier(key.public_key(), "darktower").verify(token, meeting_id="m1", now=NOW)
    assert (grant.role, grant.e2ee_required) == (Role.HOST, True)
    assert grant == signed


def test_an_unknown_role_is_refused_by_name(key: ec.EllipticCurvePrivateKey) -> None:
    claims = {
        "iss": "darktower",
        "aud": "darktower-media",
        "sub": "p1",
        "mid": "m1",
        "name": "Ada",
        "pub": True,
        "sub_ok": True,
        "role": "emperor",
        "e2ee": False,
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "jti": "j",
    }
    token = jwt.encode(claims, key, algorithm="ES256")
    with pytest.raises(TokenError, match="'role'") as caught:
        TokenVerifier(key.public_key(), "darktower").verify(token, meeting_id="m1", now=NOW)
    assert caught.value.problem is TokenProblem.INVALID
