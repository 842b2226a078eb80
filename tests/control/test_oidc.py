"""OIDC sign-in (authorization code + PKCE) against a real OpenID Provider run locally (npm
`oidc-provider`), driven through the full redirect flow like a browser; and the ID-token checks on their own,
with tokens made here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from darktower.control.accounts import AccountStore, AuditAction, AuditOutcome, InMemoryAccountStore, User
from darktower.control.devservers import free_port
from darktower.control.ephemeral import EphemeralStore
from darktower.control.oidc import OidcError, identity_from_claims, pkce_challenge, verify_id_token
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.store import InMemoryMeetingStore, MeetingStore
from darktower.core.config import Config, from_mapping

CONTROL = "http://control.test"


def with_oidc(config: Config, settings: dict[str, str]) -> Config:
    return from_mapping({**config.to_dict(), "oidc": settings})


class Browser:
    """An HTTP client that reaches the app in process at CONTROL and everything else (the provider) over
    the network, and keeps cookies: what a browser does during a sign-in."""

    def __init__(self, app: FastAPI) -> None:
        self.http = httpx.AsyncClient(mounts={CONTROL: httpx.ASGITransport(app=app)}, base_url=CONTROL)

    async def sign_in(self, login_hint: str | None = None) -> httpx.Response:
        """Follows every redirect from `/v1/auth/oidc/start` to the callback's answer."""
        params = {"login_hint": login_hint} if login_hint else {}
        return await self.http.get("/v1/auth/oidc/start", params=params, follow_redirects=True)

    async def callback_url(self) -> str:
        """Starts a sign-in and follows redirects until the provider sends the browser back (not further)."""
        response = await self.http.get("/v1/auth/oidc/start")
        while not response.headers["location"].startswith(CONTROL):
            response = await self.http.get(response.url.join(response.headers["location"]))
            assert response.is_redirect, response.text
        return str(response.headers["location"])


@pytest.fixture
async def browser_for(
    oidc_provider: Any, config: Config, make_app: Callable[..., FastAPI]
) -> AsyncIterator[Callable[..., Browser]]:
    """Makes browsers on an app that signs in through the provider (over the given stores)."""
    opened: list[Browser] = []

    def make(store: MeetingStore, accounts: AccountStore, ephemeral: EphemeralStore | None = None) -> Browser:
        app = make_app(
            store,
            app_config=with_oidc(config, oidc_provider.settings()),
            accounts=accounts,
            ephemeral=ephemeral,
        )
        opened.append(Browser(app))
        return opened[-1]

    yield make
    for browser in opened:
        await browser.http.aclose()


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_an_oidc_sign_in_yields_a_session_for_the_linked_user(
    store: MeetingStore, store_accounts: AccountStore, browser_for: Callable[..., Browser], oidc_provider: Any
) -> None:
    browser = browser_for(store, store_accounts)
    first = await browser.sign_in()
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    pair = first.json()
    me = await browser.http.get("/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    assert (me.json()["email"], me.json()["display_name"]) == ("alice@example.test", "Alice Liddell")
    refreshed = await browser.http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200

    again = await browser.sign_in()
    assert again.json()["user_id"] == pair["user_id"]
    linked = await store_accounts.user_for_identity(oidc_provider.issuer, "alice")
    assert linked is not None
    assert linked.user_id == pair["user_id"]
    assert linked.password_hash is None
    sign_ins = [e for e in await store_accounts.audit_log() if e.action is AuditAction.OIDC_LOGIN]
    assert [(e.outcome, e.user_id) for e in sign_ins] == [(AuditOutcome.SUCCESS, pair["user_id"])] * 2
    assert sign_ins[0].detail.endswith("(new account)")
    assert not sign_ins[1].detail.endswith("(new account)")


async def test_the_sign_in_state_may_live_in_redis(
    redis_server: str, redis_prefix: str, browser_for: Callable[..., Browser]
) -> None:
    ephemeral = RedisEphemeralStore.from_url(redis_server, prefix=redis_prefix)
    try:
        browser = browser_for(InMemoryMeetingStore(), InMemoryAccountStore(), ephemeral)
        response = await browser.sign_in()
    finally:
        await ephemeral.close()
    assert response.status_code == 200, response.text


async def test_an_unverified_address_never_reaches_an_existing_account(
    browser_for: Callable[..., Browser],
) -> None:
    accounts = InMemoryAccountStore()
    ada = User(user_id="ada", email="ada@example.test", display_name="Ada", password_hash="x", created_at=NOW)
    await accounts.create_user(ada)
    browser = browser_for(InMemoryMeetingStore(), accounts)
    response = await browser.sign_in(login_hint="mallory")
    assert response.status_code == 200, response.text
    mallory = await accounts.user_by_id(response.json()["user_id"])
    assert mallory is not None
    assert mallory.user_id != "ada"
    assert (mallory.email, mallory.display_name) == (None, "Mallory")
    assert await accounts.user_by_email("ada@example.test") == ada


async def test_the_authorization_request_carries_state_nonce_and_an_s256_challenge(
    browser_for: Callable[..., Browser], oidc_provider: Any
) -> None:
    browser = browser_for(InMemoryMeetingStore(), InMemoryAccountStore())
    response = await browser.http.get("/v1/auth/oidc/start")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}".startswith(oidc_provider.issuer)
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    assert "openid" in query["scope"].split()
    cookie = response.headers["set-cookie"].lower()
    assert query["state"].lower() in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


async def test_a_callback_works_once(browser_for: Callable[..., Browser]) -> None:
    browser = browser_for(InMemoryMeetingStore(), InMemoryAccountStore())
    callback = await browser.callback_url()
    assert (await browser.http.get(callback)).status_code == 200
    replayed = await browser.http.get(callback)
    assert replayed.status_code == 400
    assert error_code(replayed) == "invalid_oidc_state"


async def test_a_callback_in_another_browser_is_refused_and_leaves_the_sign_in_usable(
    browser_for: Callable[..., Browser],
) -> None:
    store, accounts = InMemoryMeetingStore(), InMemoryAccountStore()
    browser, other = browser_for(store, accounts), browser_for(store, accounts)
    callback = await browser.callback_url()
    stolen = await other.http.get(callback)
    assert stolen.status_code == 400
    assert error_code(stolen) == "invalid_oidc_state"
    assert (await browser.http.get(callback)).status_code == 200


async def test_a_refusal_by_the_provider_or_a_wrong_issuer_fails_the_sign_in_and_is_audited(
    browser_for: Callable[..., Browser],
) -> None:
    accounts = InMemoryAccountStore()
    browser = browser_for(InMemoryMeetingStore(), accounts)
    for extra in ({"error": "access_denied"}, {"iss": "https://evil.example"}):
        started = await browser.http.get("/v1/auth/oidc/start")
        state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
        response = await browser.http.get(
            "/v1/auth/oidc/callback", params={"state": state, "code": "stolen", **extra}
        )
        assert response.status_code == 401, response.text
        assert error_code(response) == "oidc_login_failed"
    failures = [e for e in await accounts.audit_log() if e.outcome is AuditOutcome.FAILURE]
    assert [e.action for e in failures] == [AuditAction.OIDC_LOGIN] * 2
    assert "access_denied" in failures[0].detail


async def test_a_forged_code_is_refused_by_the_provider(browser_for: Callable[..., Browser]) -> None:
    browser = browser_for(InMemoryMeetingStore(), InMemoryAccountStore())
    callback = urlsplit(await browser.callback_url())
    params = {key: values[0] for key, values in parse_qs(callback.query).items()}
    response = await browser.http.get(callback.path, params={**params, "code": "forged"})
    assert response.status_code == 401
    assert "invalid_grant" in response.json()["error"]["message"]


async def test_without_a_provider_oidc_routes_answer_not_configured(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    async with connect(make_app(InMemoryMeetingStore())) as client:
        for path in ("/v1/auth/oidc/start", "/v1/auth/oidc/callback?state=x&code=y"):
            response = await client.get(path)
            assert response.status_code == 404
            assert error_code(response) == "oidc_not_configured"


async def test_an_unreachable_provider_is_a_502(
    config: Config, make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    settings = {
        "issuer": f"http://127.0.0.1:{free_port()}",
        "client_id": "c",
        "redirect_uri": f"{CONTROL}/v1/auth/oidc/callback",
    }
    async with connect(make_app(InMemoryMeetingStore(), app_config=with_oidc(config, settings))) as client:
        response = await client.get("/v1/auth/oidc/start")
    assert response.status_code == 502
    assert error_code(response) == "oidc_provider_unavailable"


ISSUER = "https://idp.example"
CLIENT = "client-1"
NOW = datetime.fromtimestamp(1_900_000_000, UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks() -> list[dict[str, Any]]:
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    return [{**rsa_jwk, "kid": "rsa", "use": "sig", "alg": "RS256"}, {**ec_jwk, "kid": "ec"}]


def id_token(
    claims: dict[str, Any] | None = None, *, key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa"
) -> str:
    now = int(NOW.timestamp())
    payload = {"iss": ISSUER, "aud": CLIENT, "sub": "s1", "iat": now, "exp": now + 300, "nonce": "n1"}
    payload.update(claims or {})
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
    )


def verify(token: str, nonce: str = "n1") -> dict[str, Any]:
    return verify_id_token(token, jwks(), issuer=ISSUER, client_id=CLIENT, nonce=nonce, now=NOW.timestamp())


def test_a_valid_id_token_yields_its_claims() -> None:
    assert verify(id_token())["sub"] == "s1"
    assert verify(id_token(key=EC_KEY, alg="ES256", kid="ec"))["sub"] == "s1"
    assert verify(id_token({"aud": [CLIENT, "other"], "azp": CLIENT}))["sub"] == "s1"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (id_token({"iss": "https://evil.example"}), "Invalid issuer"),
        (id_token({"aud": "other-client"}), "Audience doesn't match"),
        (id_token({"aud": [CLIENT, "other"]}), "several audiences"),
        (id_token({"exp": int(NOW.timestamp()) - 120}), "expired"),
        (id_token({"nonce": "replayed"}), "nonce does not match"),
        (id_token({"nonce": None}), 'missing the "nonce" claim'),
        (id_token(key=EC_KEY, alg="ES256", kid="rsa"), "its key is for RS256"),
        (id_token(key=RSA_KEY, alg="PS256", kid="rsa"), "its key is for RS256"),
        (id_token(key=b"k" * 32, alg="HS256"), "'HS256', which is not accepted"),
        (jwt.encode({"sub": "s1"}, None, algorithm="none"), "'none', which is not accepted"),  # type: ignore[arg-type]
        (
            id_token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "Signature verification",
        ),
        ("not a token", "malformed"),
    ],
)
def test_an_id_token_that_does_not_hold_is_refused(token: str, message: str) -> None:
    with pytest.raises(OidcError, match=message):
        verify(token)


def test_a_token_from_an_unpublished_key_asks_for_the_keys_again() -> None:
    with pytest.raises(KeyError):
        verify(id_token(kid="rotated"))


def test_the_pkce_challenge_is_rfc_7636s() -> None:
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("claims", "email", "name"),
    [
        ({"email": "A@B.example", "email_verified": True, "name": "Ada"}, "a@b.example", "Ada"),
        ({"email": "a@b.example", "email_verified": "true"}, None, "user"),
        ({"email": "a@b.example", "email_verified": True}, "a@b.example", "a@b.example"),
        ({"preferred_username": "ada\u202e\n", "name": "\u0007"}, None, "ada"),
        ({"name": "x" * 100}, None, "x" * 64),
    ],
)
def test_an_identity_takes_only_verified_addresses_and_printable_names(
    claims: dict[str, Any], email: str | None, name: str
) -> None:
    identity = identity_from_claims({"iss": ISSUER, "sub": "s1", **claims})
    assert (identity.issuer, identity.subject, identity.email, identity.name) == (ISSUER, "s1", email, name)
