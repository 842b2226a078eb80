"""Generated requests to the account and sign-in routes: whatever a client sends (bodies, bytes, headers,
callback parameters), the answer is a documented status with a JSON error, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.app import create_app
from darktower.control.store import InMemoryMeetingStore
from darktower.core.config import from_mapping
from darktower.core.tokens import TokenSigner, TokenVerifier

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=8,
)
EMAILS = st.emails().map(str) | st.text(max_size=260) | JSON_VALUES
PASSWORDS = st.text(min_size=6, max_size=260) | JSON_VALUES
REGISTER_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "email": EMAILS,
        "password": PASSWORDS,
        "display_name": st.text(max_size=70) | JSON_VALUES,
        "extra": JSON_VALUES,
    },
)
LOGIN_BODIES = st.fixed_dictionaries(
    {}, optional={"email": EMAILS, "password": PASSWORDS, "extra": JSON_VALUES}
)
REFRESH_BODIES = st.fixed_dictionaries(
    {}, optional={"refresh_token": st.text(max_size=600) | JSON_VALUES, "extra": JSON_VALUES}
)
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = from_mapping(
    {
        "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
        "oidc": {"issuer": "http://127.0.0.1:9", "client_id": "c", "redirect_uri": "http://t/cb"},
    }
)
"""Fast hashing; an OIDC provider that is never reached (the callbacks below fail before they need it)."""


def fresh_client(token_keys: tuple[TokenSigner, TokenVerifier]) -> httpx.AsyncClient:
    app = create_app(
        config=CONFIG,
        signer=token_keys[0],
        store=InMemoryMeetingStore(),
        certificate_hashes=list,
        quic_port=4433,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://control.test")


def assert_error(response: httpx.Response, statuses: set[int]) -> str:
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    code: str = body["error"]["code"]
    return code


@given(body=REGISTER_BODIES)
@EXAMPLES
async def test_register_answers_every_body(
    token_keys: tuple[TokenSigner, TokenVerifier], body: dict[str, Any]
) -> None:
    async with fresh_client(token_keys) as client:
        response = await client.post("/v1/users", json=body)
        if response.status_code == 201:
            created = response.json()
            assert created["email"] == body["email"].lower()
            again = await client.post(
                "/v1/auth/login", json={"email": body["email"], "password": body["password"]}
            )
            assert again.status_code == 200, again.text
            return
    assert assert_error(response, {422}) == "invalid_request"


@given(body=LOGIN_BODIES)
@EXAMPLES
async def test_login_answers_every_body(
    token_keys: tuple[TokenSigner, TokenVerifier], body: dict[str, Any]
) -> None:
    async with fresh_client(token_keys) as client:
        response = await client.post("/v1/auth/login", json=body)
    assert assert_error(response, {401, 422}) in {"invalid_credentials", "invalid_request"}


@given(body=REFRESH_BODIES, path=st.sampled_from(["/v1/auth/refresh", "/v1/auth/logout"]))
@EXAMPLES
async def test_refresh_and_logout_answer_every_body(
    token_keys: tuple[TokenSigner, TokenVerifier], body: dict[str, Any], path: str
) -> None:
    async with fresh_client(token_keys) as client:
        response = await client.post(path, json=body)
    assert assert_error(response, {401, 422}) in {"invalid_refresh_token", "invalid_request"}


@given(content=st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
@EXAMPLES
async def test_arbitrary_bytes_never_make_a_500(
    token_keys: tuple[TokenSigner, TokenVerifier], content: bytes
) -> None:
    headers = {"content-type": "application/json"}
    async with fresh_client(token_keys) as client:
        for path in ("/v1/users", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"):
            response = await client.post(path, content=content, headers=headers)
            assert_error(response, {401, 422})


@given(authorization=st.text(max_size=300).filter(lambda text: text.isprintable() and text.isascii()))
@EXAMPLES
async def test_any_authorization_header_is_refused_with_401(
    token_keys: tuple[TokenSigner, TokenVerifier], authorization: str
) -> None:
    headers = {"Authorization": authorization}
    async with fresh_client(token_keys) as client:
        me = await client.get("/v1/users/me", headers=headers)
        assert assert_error(me, {401}) in {"invalid_token", "unauthenticated"}
        created = await client.post("/v1/meetings", json={}, headers=headers)
        assert_error(created, {401})


@given(
    params=st.dictionaries(
        st.sampled_from(["state", "code", "error", "iss", "x"]), st.text(max_size=300), max_size=5
    ),
    cookie=st.booleans(),
)
@EXAMPLES
async def test_any_oidc_callback_is_refused_precisely(
    token_keys: tuple[TokenSigner, TokenVerifier], params: dict[str, str], cookie: bool
) -> None:
    cookies = {"darktower_oidc_state": params.get("state", "")} if cookie else {}
    async with fresh_client(token_keys) as client:
        client.cookies.update(
            {k: v for k, v in cookies.items() if v.isascii() and v.isprintable() and ";" not in v}
        )
        response = await client.get("/v1/auth/oidc/callback", params=params)
    assert assert_error(response, {400}) == "invalid_oidc_state"
