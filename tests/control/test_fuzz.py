"""Generated bodies: whatever a client sends, the API answers a documented status, never a 500, and a 422
names the fields it refuses."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

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
NAMES = st.text(max_size=70) | JSON_VALUES
JOIN_BODIES = st.fixed_dictionaries(
    {},
    optional={"display_name": NAMES, "publish": JSON_VALUES, "subscribe": JSON_VALUES, "extra": JSON_VALUES},
)
CREATE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "meeting_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True) | NAMES,
        "title": st.text(max_size=210) | JSON_VALUES,
        "extra": JSON_VALUES,
    },
)
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh_client(token_keys: tuple[TokenSigner, TokenVerifier]) -> httpx.AsyncClient:
    app = create_app(
        config=from_mapping({}),
        signer=token_keys[0],
        store=InMemoryMeetingStore(),
        certificate_hashes=list,
        quic_port=4433,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://control.test")


def assert_refusal_names_fields(response: httpx.Response, body: Any, known: set[str]) -> None:
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    named = known | (set(body) if isinstance(body, dict) else set())
    for part in error["message"].split("; "):
        field = part.partition(":")[0]
        assert field in named or part.startswith("body"), part


@given(body=JOIN_BODIES)
@EXAMPLES
async def test_join_answers_every_body_precisely(
    token_keys: tuple[TokenSigner, TokenVerifier], body: dict[str, Any]
) -> None:
    async with fresh_client(token_keys) as client:
        await client.post("/v1/meetings", json={"meeting_id": "m1"})
        response = await client.post("/v1/meetings/m1/join", json=body)
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 422:
        assert_refusal_names_fields(response, body, {"display_name", "publish", "subscribe"})
        return
    grant = token_keys[1].verify(response.json()["token"], meeting_id="m1", now=time.time())
    assert grant.display_name == body["display_name"]
    assert grant.can_publish is body.get("publish", True)
    assert grant.can_subscribe is body.get("subscribe", True)


@given(body=CREATE_BODIES)
@EXAMPLES
async def test_create_answers_every_body_precisely(
    token_keys: tuple[TokenSigner, TokenVerifier], body: dict[str, Any]
) -> None:
    async with fresh_client(token_keys) as client:
        response = await client.post("/v1/meetings", json=body)
        if response.status_code == 201:
            created = response.json()
            assert created["title"] == body.get("title", "")
            assert body.get("meeting_id") in {None, created["meeting_id"]}
            assert (await client.get(f"/v1/meetings/{created['meeting_id']}")).json() == created
            return
    assert response.status_code == 422, response.text
    assert_refusal_names_fields(response, body, {"meeting_id", "title"})


@given(content=st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
@EXAMPLES
async def test_arbitrary_bytes_never_make_a_500(
    token_keys: tuple[TokenSigner, TokenVerifier], content: bytes
) -> None:
    headers = {"content-type": "application/json"}
    async with fresh_client(token_keys) as client:
        await client.post("/v1/meetings", json={"meeting_id": "m1"})
        for path in ("/v1/meetings", "/v1/meetings/m1/join"):
            response = await client.post(path, content=content, headers=headers)
            assert response.status_code in {200, 201, 409, 422}, response.text
            assert response.status_code < 300 or set(response.json()["error"]) == {"code", "message"}


@given(meeting_id=st.text(max_size=80))
@EXAMPLES
async def test_any_path_id_is_found_or_404(
    token_keys: tuple[TokenSigner, TokenVerifier], meeting_id: str
) -> None:
    async with fresh_client(token_keys) as client:
        response = await client.get(f"/v1/meetings/{quote(meeting_id, safe='')}")
    code = response.json()["error"]["code"]
    if meeting_id and "/" not in meeting_id and meeting_id not in {".", ".."}:
        assert (response.status_code, code) == (404, "meeting_not_found")
    else:  # ASGI servers decode %2F and URL clients resolve dot segments: another route may answer
        assert code in {"not_found", "method_not_allowed"}
