"""The control API over both stores: every endpoint, every refusal, and the tokens it hands out."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from darktower.control.api_common import MAX_BODY_BYTES
from darktower.control.main import certificate_hashes_for
from darktower.control.store import MeetingStore
from darktower.core.certs import store_for, utcnow
from darktower.core.config import Config, ConfigError, from_mapping
from darktower.core.tokens import TokenVerifier

QUIC_PORT = 4999
"""The port and hashes the `make_app` fixture gives the app."""
HASHES = [bytes(range(32)), bytes(32)]


def error_of(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"], body["error"]["message"]


async def test_healthz_says_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_meeting_is_created_with_the_given_id_and_title(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post("/v1/meetings", json={"meeting_id": "standup_1-A", "title": "Standup"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "meeting_id",
        "title",
        "created_at",
        "created_by",
        "scheduled_start",
        "ended_at",
        "settings",
        "host_user_ids",
    }
    assert body["created_by"] is None
    assert body["meeting_id"] == "standup_1-A"
    assert body["title"] == "Standup"
    created = datetime.fromisoformat(body["created_at"])
    assert before <= created <= datetime.now(UTC)


@pytest.mark.parametrize("request_body", [None, {}, {"title": "t"}])
async def test_without_an_id_the_server_generates_a_url_safe_one(
    client: httpx.AsyncClient, request_body: dict[str, str] | None
) -> None:
    first = await client.post("/v1/meetings", json=request_body)
    second = await client.post("/v1/meetings", json=request_body)
    assert first.status_code == second.status_code == 201
    ids = {first.json()["meeting_id"], second.json()["meeting_id"]}
    assert len(ids) == 2
    for meeting_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{10,64}", meeting_id)


async def test_an_empty_body_creates_a_meeting_without_a_title(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/meetings")
    assert response.status_code == 201
    assert response.json()["title"] == ""


async def test_a_taken_id_is_refused_with_409(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201
    response = await client.post("/v1/meetings", json={"meeting_id": "m1", "title": "again"})
    assert response.status_code == 409
    code, message = error_of(response)
    assert code == "meeting_exists"
    assert "m1" in message


async def test_a_meeting_reads_back_as_it_was_created(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v1/meetings", json={"meeting_id": "m1", "title": "Über"})).json()
    response = await client.get("/v1/meetings/m1")
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("meeting_id", ["nope", "bad%20id", "x" * 65, "%F0%9F%92%A9"])
async def test_an_unknown_meeting_is_404(client: httpx.AsyncClient, meeting_id: str) -> None:
    for response in (
        await client.get(f"/v1/meetings/{meeting_id}"),
        await client.post(f"/v1/meetings/{meeting_id}/join", json={"display_name": "Ada"}),
    ):
        assert response.status_code == 404
        assert error_of(response)[0] == "meeting_not_found"


async def test_join_returns_a_token_that_names_meeting_participant_and_permissions(
    client: httpx.AsyncClient, verifier: TokenVerifier, config: Config
) -> None:
    await client.post("/v1/meetings", json={"meeting_id": "m1"})
    before = time.time()
    response = await client.post(
        "/v1/meetings/m1/join", json={"display_name": "Ada 🚀", "publish": False, "subscribe": True}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "token",
        "participant_id",
        "meeting_id",
        "role",
        "e2ee_required",
        "webtransport_url",
        "certificate_hashes",
        "expires_at",
    }
    assert body["meeting_id"] == "m1"
    assert body["webtransport_url"] == f"https://media.example:{QUIC_PORT}/meetings/m1"
    assert body["certificate_hashes"] == [{"algorithm": "sha-256", "value": h.hex()} for h in HASHES]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", body["participant_id"])
    grant = verifier.verify(body["token"], meeting_id="m1", now=time.time())
    assert grant.participant_id == body["participant_id"]
    assert grant.display_name == "Ada 🚀"
    assert (grant.can_publish, grant.can_subscribe) == (False, True)
    ttl = config.auth.join_token_ttl_s
    assert before + ttl - 1 <= grant.expires_at <= time.time() + ttl
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromtimestamp(grant.expires_at, UTC)


async def test_each_join_is_a_new_participant_allowed_everything_by_default(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    await client.post("/v1/meetings", json={"meeting_id": "m1"})
    grants = [
        verifier.verify(
            (await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})).json()["token"],
            meeting_id="m1",
            now=time.time(),
        )
        for _ in range(3)
    ]
    assert len({g.participant_id for g in grants}) == 3
    assert all(g.can_publish and g.can_subscribe for g in grants)


@pytest.mark.parametrize(
    ("path", "content", "message"),
    [
        ("/v1/meetings", b'{"meeting_id": "has space"}', "meeting_id: String should match pattern"),
        ("/v1/meetings", b'{"meeting_id": ""}', "meeting_id: String should match pattern"),
        ("/v1/meetings", b'{"meeting_id": 7}', "meeting_id: Input should be a valid string"),
        ("/v1/meetings", b'{"title": "' + b"t" * 201 + b'"}', "title: String should have at most 200"),
        (
            "/v1/meetings",
            b'{"title": "a\\u0007b"}',
            "title: must not contain control characters (found U+0007)",
        ),
        ("/v1/meetings", b'{"titel": "x"}', "titel: unknown field"),
        ("/v1/meetings", b"[]", "body: Input should be an object"),
        ("/v1/meetings", b"{bad", "body is not valid JSON: key must be a string at line 1 column 2"),
        ("/v1/meetings", b"\xff", "body is not valid JSON"),
        ("/v1/meetings", b"NaN", "body: Input should be an object"),
        ("/v1/meetings/m1/join", b"", "request body is empty; expected a JSON object"),
        ("/v1/meetings/m1/join", b"{}", "display_name: Field required"),
        ("/v1/meetings/m1/join", b'{"display_name": ""}', "display_name: String should have at least 1"),
        ("/v1/meetings/m1/join", b'{"display_name": "   "}', "display_name: must not be blank"),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": "' + b"n" * 65 + b'"}',
            "display_name: String should have at most 64",
        ),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": "\\ud800"}',
            "body is not valid JSON: unexpected end of hex escape at line 1 column 25",
        ),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": "a\\nb"}',
            "display_name: must not contain control characters",
        ),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": "a", "publish": "yes"}',
            "publish: Input should be a valid boolean",
        ),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": "a", "subscribe": 1}',
            "subscribe: Input should be a valid boolean",
        ),
        (
            "/v1/meetings/m1/join",
            b'{"display_name": null, "publish": null}',
            "display_name: Input should be a valid string; publish: Input should be a valid boolean",
        ),
    ],
)
async def test_a_bad_body_is_422_naming_the_field_and_why(
    client: httpx.AsyncClient, path: str, content: bytes, message: str
) -> None:
    await client.post("/v1/meetings", json={"meeting_id": "m1"})
    response = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    code, text = error_of(response)
    assert code == "invalid_request"
    assert text.startswith(message), text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_a_body_not_declared_as_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post("/v1/meetings", content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 415
    code, message = error_of(response)
    assert code == "unsupported_media_type"
    assert content_type in message


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge+json"])
async def test_json_media_types_with_parameters_or_suffix_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post("/v1/meetings", content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 201


async def test_an_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    content = b'{"title": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await client.post(
        "/v1/meetings", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)[0] == "body_too_large"


async def test_unknown_routes_and_methods_have_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing")
    assert response.status_code == 404
    assert error_of(response)[0] == "not_found"
    response = await client.delete("/v1/meetings/m1")
    assert response.status_code == 405
    assert error_of(response)[0] == "method_not_allowed"


async def test_join_lists_the_hashes_of_the_self_signed_store(
    store: MeetingStore,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
    config: Config,
) -> None:
    tls = store_for(
        config.server.data_dir, config.tls.self_signed_validity_hours, config.tls.rotate_before_expiry_hours
    )
    serving = tls.rotate(utcnow())
    async with connect(make_app(store, certificate_hashes=certificate_hashes_for(config))) as client:
        await client.post("/v1/meetings", json={"meeting_id": "m1"})
        body = (await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})).json()
    assert body["certificate_hashes"] == [{"algorithm": "sha-256", "value": serving.sha256.hex()}]


async def test_an_unreadable_certificate_store_is_503_not_500(
    store: MeetingStore,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
    config: Config,
) -> None:
    tls = Path(config.server.data_dir) / "tls"
    tls.mkdir(parents=True)
    (tls / "1.crt").write_text("not a certificate")
    (tls / "1.key").write_text("not a key")
    async with connect(make_app(store, certificate_hashes=certificate_hashes_for(config))) as client:
        await client.post("/v1/meetings", json={"meeting_id": "m1"})
        response = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
    assert response.status_code == 503
    code, message = error_of(response)
    assert code == "certificates_unavailable"
    assert "1.crt" in message


@pytest.mark.parametrize(("validity", "listed"), [(timedelta(days=10), True), (timedelta(days=90), False)])
def test_a_configured_certificate_is_listed_only_when_browsers_accept_it_by_hash(
    tmp_path: Path, validity: timedelta, listed: bool
) -> None:
    cert_path, key_path, sha256 = _certificate(tmp_path, validity)
    config = from_mapping({"tls": {"certificate": str(cert_path), "private_key": str(key_path)}})
    assert certificate_hashes_for(config)() == ([sha256] if listed else [])


def _certificate(directory: Path, validity: timedelta) -> tuple[Path, Path, bytes]:
    """A PEM certificate and key valid for `validity` from now, and the SHA-256 of its DER form."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


async def test_the_web_app_is_served_with_an_index_fallback(
    store: MeetingStore,
    make_app: Callable[..., FastAPI],
    connect: Callable[[FastAPI], httpx.AsyncClient],
    tmp_path: Path,
) -> None:
    root = tmp_path / "web"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>Dark Tower</title>")
    (root / "assets" / "app.js").write_text("console.log('hi')")
    config = from_mapping({"server": {"web_root": str(root)}})
    async with connect(make_app(store, app_config=config)) as client:
        index = await client.get("/")
        asset = await client.get("/assets/app.js")
        deep_link = await client.get("/meetings/m1")
        api_miss = await client.get("/v1/nothing")
        health = await client.get("/healthz")
    assert index.status_code == deep_link.status_code == 200
    assert index.text == deep_link.text == "<!doctype html><title>Dark Tower</title>"
    assert asset.text == "console.log('hi')"
    assert api_miss.status_code == 404
    assert error_of(api_miss)[0] == "not_found"
    assert health.json() == {"status": "ok"}


def test_a_configured_web_root_that_does_not_exist_is_a_config_error(
    store: MeetingStore, make_app: Callable[..., FastAPI], tmp_path: Path
) -> None:
    config = from_mapping({"server": {"web_root": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match=r"server.web_root: .*missing is not a directory"):
        make_app(store, app_config=config)
