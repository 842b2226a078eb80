"""Access tokens on their own: what they carry, and that they and join tokens are never mistaken for each
other."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.control.access_tokens import AccessClaims, AccessTokenError, AccessTokens
from darktower.core.tokens import TokenError, TokenSigner, TokenVerifier

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = 1_900_000_000.0


def test_a_token_verifies_to_its_user_and_session_until_it_expires() -> None:
    tokens = AccessTokens(KEY, "darktower", ttl_s=600)
    token, claims = tokens.issue(user_id="u1", session_id="s1", now=NOW)
    assert claims == AccessClaims(user_id="u1", session_id="s1", expires_at=int(NOW) + 600)
    assert tokens.verify(token, now=NOW + 600) == claims
    with pytest.raises(AccessTokenError, match="expired") as caught:
        tokens.verify(token, now=NOW + 700)
    assert caught.value.expired


def test_another_issuer_is_refused() -> None:
    token, _ = AccessTokens(KEY, "elsewhere", ttl_s=600).issue(user_id="u1", session_id="s1", now=NOW)
    with pytest.raises(AccessTokenError, match="issuer") as caught:
        AccessTokens(KEY, "darktower", ttl_s=600).verify(token, now=NOW)
    assert not caught.value.expired


def test_access_and_join_tokens_signed_by_one_key_are_not_interchangeable() -> None:
    access_token, _ = AccessTokens(KEY, "darktower", ttl_s=600).issue(user_id="u1", session_id="s1", now=NOW)
    join_token, _ = TokenSigner(KEY, "darktower", ttl_s=120).sign(
        meeting_id="m1",
        participant_id="u1",
        display_name="Ada",
        can_publish=True,
        can_subscribe=True,
        now=NOW,
    )
    with pytest.raises(TokenError, match="join token rejected"):
        TokenVerifier(KEY.public_key(), "darktower").verify(access_token, meeting_id="m1", now=NOW)
    with pytest.raises(AccessTokenError, match="not an access token"):
        AccessTokens(KEY, "darktower", ttl_s=600).verify(join_token, now=NOW)
