"""Accounts and sessions through the API, on every durable store: registration, password sign-in, access
tokens, refresh-token rotation and reuse detection, sign-out, the audit log, and meetings that record who
created them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from darktower.control.access_tokens import AccessTokens
from darktower.control.accounts import AccountStore, AuditAction, AuditOutcome
from darktower.control.store import MeetingStore
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenSigner

PASSWORD = "correct horse battery"


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    code: str = body["error"]["code"]
    return code


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(
    store: MeetingStore,
    store_accounts: AccountStore,
    clock: Clock,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(make_app(store, accounts=store_accounts, clock=clock)) as http:
        yield http


async def register(api: httpx.AsyncClient, email: str = "Ada@Example.test", **extra: str) -> dict[str, str]:
    response = await api.post("/v1/users", json={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def login(api: httpx.AsyncClient, email: str = "ada@example.test") -> dict[str, str]:
    response = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, str] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_registering_makes_an_account_with_a_lower_case_address(api: httpx.AsyncClient) -> None:
    body = await register(api)
    assert set(body) == {"user_id", "email", "display_name", "created_at"}
    assert body["email"] == "ada@example.test"
    assert body["display_name"] == "ada"
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    named = await register(api, "grace@example.test", display_name="Grace Hopper")
    assert named["display_name"] == "Grace Hopper"


async def test_an_address_registers_once_whatever_its_case(api: httpx.AsyncClient) -> None:
    await register(api)
    response = await api.post("/v1/users", json={"email": "ADA@example.test", "password": PASSWORD})
    assert response.status_code == 409
    assert error_of(response) == "user_exists"


async def test_closed_registration_refuses_new_accounts(
    store: MeetingStore,
    config: Config,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
) -> None:
    settings = config.to_dict()
    closed = from_mapping({**settings, "auth": {**settings["auth"], "open_registration": False}})
    async with connect(make_app(store, app_config=closed)) as api:
        response = await api.post("/v1/users", json={"email": "ada@example.test", "password": PASSWORD})
    assert response.status_code == 403
    assert error_of(response) == "registration_closed"


async def test_signing_in_gives_an_access_token_for_the_account_and_a_refresh_token(
    api: httpx.AsyncClient, clock: Clock
) -> None:
    user = await register(api)
    pair = await login(api, "ADA@example.test")
    assert set(pair) == {
        "user_id",
        "access_token",
        "token_type",
        "expires_at",
        "refresh_token",
        "refresh_expires_at",
    }
    assert (pair["user_id"], pair["token_type"]) == (user["user_id"], "Bearer")
    refreshed = await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.headers["cache-control"] == "no-store"
    lifetime = datetime.fromisoformat(pair["expires_at"]) - datetime.fromtimestamp(clock.now, UTC)
    assert timedelta(0) < lifetime <= timedelta(minutes=15)
    assert datetime.fromisoformat(pair["refresh_expires_at"]) > datetime.fromisoformat(pair["expires_at"])
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "darktower-api"
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == "ES256"
    me = await api.get("/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json() == user


@pytest.mark.parametrize(
    ("email", "password"), [("ada@example.test", "wrong password"), ("nobody@example.test", PASSWORD)]
)
async def test_a_wrong_address_or_password_is_refused_alike(
    api: httpx.AsyncClient, email: str, password: str
) -> None:
    await register(api)
    response = await api.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert error_of(response) == "invalid_credentials"
    assert response.json()["error"]["message"] == "wrong email address or password"


async def test_a_refresh_rotates_the_pair_and_the_new_refresh_token_works(api: httpx.AsyncClient) -> None:
    await register(api)
    first = await login(api)
    second = (await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user_id"] == first["user_id"]
    assert (await api.get("/v1/users/me", headers=bearer(second["access_token"]))).status_code == 200
    third = await api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_session_and_is_audited(
    api: httpx.AsyncClient, store_accounts: AccountStore
) -> None:
    user = await register(api)
    first = await login(api)
    second = (await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    other_session = await login(api)

    replayed = await api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replayed.status_code == 401
    assert error_of(replayed) == "invalid_refresh_token"
    assert "already used" in replayed.json()["error"]["message"]
    after = await api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401
    assert error_of(after) == "invalid_refresh_token"
    untouched = await api.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert untouched.status_code == 200

    reuse = [event for event in await store_accounts.audit_log() if event.action is AuditAction.REFRESH_REUSE]
    assert len(reuse) == 1
    assert (reuse[0].user_id, reuse[0].outcome, reuse[0].ip) == (
        user["user_id"],
        AuditOutcome.FAILURE,
        "127.0.0.1",
    )


async def test_signing_out_revokes_that_session_only(api: httpx.AsyncClient) -> None:
    await register(api)
    leaving, staying = await login(api), await login(api)
    response = await api.post("/v1/auth/logout", json={"refresh_token": leaving["refresh_token"]})
    assert response.status_code == 204
    assert response.content == b""
    refused = await api.post("/v1/auth/refresh", json={"refresh_token": leaving["refresh_token"]})
    assert refused.status_code == 401
    assert "signed out" in refused.json()["error"]["message"]
    assert (
        await api.post("/v1/auth/refresh", json={"refresh_token": staying["refresh_token"]})
    ).status_code == 200


async def test_unknown_refresh_tokens_are_refused(api: httpx.AsyncClient) -> None:
    for path in ("/v1/auth/refresh", "/v1/auth/logout"):
        response = await api.post(path, json={"refresh_token": "not-a-token"})
        assert response.status_code == 401
        assert error_of(response) == "invalid_refresh_token"


async def test_an_expired_refresh_token_is_refused(
    api: httpx.AsyncClient, clock: Clock, config: Config
) -> None:
    await register(api)
    pair = await login(api)
    clock.now += config.auth.refresh_token_ttl_s + 1
    response = await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_every_auth_event_is_in_the_audit_log_with_time_user_address_and_outcome(
    api: httpx.AsyncClient, store_accounts: AccountStore, clock: Clock
) -> None:
    user = await register(api)
    await api.post("/v1/auth/login", json={"email": "ada@example.test", "password": "wrong password"})
    await api.post("/v1/auth/login", json={"email": "eve@example.test", "password": PASSWORD})
    pair = await login(api)
    rotated = (await api.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).json()
    await api.post("/v1/auth/refresh", json={"refresh_token": "forged"})
    await api.post("/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    await api.post("/v1/users", json={"email": "ada@example.test", "password": PASSWORD})

    log = await store_accounts.audit_log()
    ada = user["user_id"]
    assert [(e.action, e.outcome, e.user_id) for e in log] == [
        (AuditAction.REGISTER, AuditOutcome.SUCCESS, ada),
        (AuditAction.LOGIN, AuditOutcome.FAILURE, ada),
        (AuditAction.LOGIN, AuditOutcome.FAILURE, None),
        (AuditAction.LOGIN, AuditOutcome.SUCCESS, ada),
        (AuditAction.REFRESH, AuditOutcome.SUCCESS, ada),
        (AuditAction.REFRESH, AuditOutcome.FAILURE, None),
        (AuditAction.LOGOUT, AuditOutcome.SUCCESS, ada),
        (AuditAction.REGISTER, AuditOutcome.FAILURE, None),
    ]
    assert {e.ip for e in log} == {"127.0.0.1"}
    assert all(abs(e.at.timestamp() - clock.now) < 1 for e in log)
    assert "wrong password" in log[1].detail
    assert "eve@example.test" in log[2].detail
    assert PASSWORD not in " ".join(e.detail for e in log)


async def test_a_meeting_created_while_signed_in_records_its_creator(api: httpx.AsyncClient) -> None:
    user = await register(api)
    pair = await login(api)
    created = await api.post("/v1/meetings", json={"meeting_id": "m1"}, headers=bearer(pair["access_token"]))
    assert created.status_code == 201
    assert created.json()["created_by"] == user["user_id"]
    assert (await api.get("/v1/meetings/m1")).json()["created_by"] == user["user_id"]
    anonymous = await api.post("/v1/meetings", json={"meeting_id": "m2"})
    assert anonymous.json()["created_by"] is None


async def test_a_meeting_is_not_created_with_a_bad_access_token(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/meetings", json={"meeting_id": "m1"}, headers=bearer("nonsense"))
    assert response.status_code == 401
    assert error_of(response) == "invalid_token"
    assert (await api.get("/v1/meetings/m1")).status_code == 404


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_an_expired_access_token_is_refused_as_expired(api: httpx.AsyncClient, clock: Clock) -> None:
    await register(api)
    pair = await login(api)
    clock.now += 15 * 60 + 10
    response = await api.get("/v1/users/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 401
    assert error_of(response) == "token_expired"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def forged_tokens(signer: TokenSigner, user_id: str) -> dict[str, str]:
    """Tokens that must not authenticate `user_id`: another key, no signature, a join token."""
    other = AccessTokens(ec.generate_private_key(ec.SECP256R1()), "darktower", 900)
    join_token, _ = signer.sign(
        meeting_id="m1",
        participant_id=user_id,
        display_name="Ada",
        can_publish=True,
        can_subscribe=True,
        now=time.time(),
    )
    now = int(time.time())
    claims = {"iss": "darktower", "aud": "darktower-api", "sub": user_id, "sid": "s", "iat": now}
    unsigned = jwt.encode({**claims, "exp": now + 60, "jti": "j"}, key=None, algorithm="none")  # type: ignore[arg-type]
    return {
        "another key": other.issue(user_id=user_id, session_id="s", now=time.time())[0],
        "alg none": unsigned,
        "join token": join_token,
    }


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_forged_and_foreign_tokens_are_refused(api: httpx.AsyncClient, signer: TokenSigner) -> None:
    user = await register(api)
    for name, token in forged_tokens(signer, user["user_id"]).items():
        response = await api.get("/v1/users/me", headers=bearer(token))
        assert response.status_code == 401, name
        assert error_of(response) == "invalid_token", name


@pytest.mark.parametrize("store", ["memory"], indirect=True)
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        ({"Authorization": "Basic YWRhOnB3"}, "invalid_token"),
        ({"Authorization": "Bearer "}, "invalid_token"),
    ],
)
async def test_users_me_needs_a_bearer_token(
    api: httpx.AsyncClient, headers: dict[str, str], code: str
) -> None:
    response = await api.get("/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert error_of(response) == code
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("store", ["memory"], indirect=True)
async def test_a_sign_in_with_stronger_settings_upgrades_the_stored_hash(
    store: MeetingStore,
    store_accounts: AccountStore,
    config: Config,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
) -> None:
    async with connect(make_app(store, accounts=store_accounts)) as api:
        await register(api)
    before = await store_accounts.user_by_email("ada@example.test")
    assert before is not None
    assert before.password_hash is not None
    assert "m=64,t=1" in before.password_hash
    stronger = from_mapping(
        {**config.to_dict(), "auth": {"password_hash_time_cost": 2, "password_hash_memory_kib": 128}}
    )
    async with connect(make_app(store, accounts=store_accounts, app_config=stronger)) as api:
        await login(api)
        after = await store_accounts.user_by_email("ada@example.test")
        assert after is not None
        assert after.password_hash is not None
        assert "m=128,t=2" in after.password_hash
        await login(api)
