"""schemathesis against the served OpenAPI document of the real control plane (hypercorn over a real socket,
PostgreSQL and Redis as its stores): whatever it generates, valid or not, the answer is never a 5xx, its
status and body match the document, and every refusal has the `{"error": {"code", "message"}}` shape.

The server runs in a thread with its own event loop (schemathesis calls it synchronously). The run is
bounded: `EXAMPLES` per operation and no stateful phase, a few hundred requests in all.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err, Ok

from darktower.control.devservers import scratch_schema
from darktower.control.main import run_control
from darktower.core.config import from_mapping

EXAMPLES = 30
START_TIMEOUT_S = 30.0
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")


class ServedControlPlane:
    """`run_control` over PostgreSQL (a scratch schema) and Redis, in a thread of its own."""

    def __init__(self, postgres: str, redis: str, data_dir: Path) -> None:
        self._postgres = postgres
        self._redis = redis
        self._data_dir = data_dir
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._port: int | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="control-plane", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(START_TIMEOUT_S), "the control plane did not start"
        if self._failure is not None:
            raise self._failure
        return f"http://127.0.0.1:{self._port}"

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)
        assert not self._thread.is_alive(), "the control plane did not stop"
        self._loop.close()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with scratch_schema(self._postgres) as dsn:
            config = from_mapping(
                {
                    "server": {
                        "data_dir": str(self._data_dir),
                        "http_port": 0,
                        "web_root": str(self._data_dir),
                    },
                    "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
                    "store": {
                        "durable": "postgres",
                        "postgres_dsn": dsn,
                        "ephemeral": "redis",
                        "redis_url": self._redis,
                        "redis_key_prefix": f"fuzz-{id(self)}:",
                    },
                }
            )
            await run_control(config, 4433, on_ready=self._on_ready, stop=self._stop)

    def _on_ready(self, port: int) -> None:
        self._port = port
        self._ready.set()


@pytest.fixture(scope="module")
def base_url(
    postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with ServedControlPlane(postgres_server, redis_server, tmp_path_factory.mktemp("fuzz")) as url:
        yield url


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def error_shape(response: requests.Response) -> None:
    """Every 4xx/5xx is JSON `{"error": {"code": <snake_case>, "message": <non-empty text>}}`."""
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert _ERROR_CODE.fullmatch(body["error"]["code"]), body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body


def test_the_api_answers_every_generated_request_as_documented(base_url: str) -> None:
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    results = list(api.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert not invalid, invalid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 10, [op.label for op in operations]
    with requests.Session() as session:
        for operation in operations:

            @given(
                case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
                | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
            )
            @settings(
                max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
            )
            def answers_as_documented(case: Any) -> None:
                response = case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)
                error_shape(response)

            answers_as_documented()
