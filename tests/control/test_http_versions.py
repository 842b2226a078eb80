"""One control-plane server speaks HTTP/1.1 (plain, and over TLS), HTTP/2 (TLS with ALPN) and HTTP/3 (QUIC),
each tested with a real client over real sockets: httpx for HTTP/1.1 and HTTP/2, aioquic's HTTP/3 client
for HTTP/3. TLS is verified against the self-signed certificate the workers use (from the data directory)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from darktower.control.main import run_control
from darktower.core.certs import store_for, utcnow
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenVerifier, load_or_create_signing_key, signing_key_path

DEADLINE_S = 30.0
HOST = "127.0.0.1"
SERVER_NAME = "localhost"
"""The name the self-signed certificate is made for."""


@dataclass(frozen=True)
class Served:
    http_port: int
    https_port: int
    certificate: Path
    data_dir: Path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    config = from_mapping(
        {
            "server": {
                "data_dir": str(tmp_path / "data"),
                "http_port": 0,
                "https": True,
                "https_port": 0,
                "web_root": str(tmp_path),
            },
            "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
        }
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    https: list[int] = []
    stop = asyncio.Event()
    server = asyncio.create_task(
        run_control(config, 4433, on_ready=ready.set_result, stop=stop, on_https_ready=https.append)
    )
    try:
        http_port = await asyncio.wait_for(asyncio.shield(ready), DEADLINE_S)
        yield Served(http_port, https[0], current_certificate(config), tmp_path / "data")
    finally:
        stop.set()
        await asyncio.wait_for(server, DEADLINE_S)


def current_certificate(config: Config) -> Path:
    store = store_for(
        config.server.data_dir, config.tls.self_signed_validity_hours, config.tls.rotate_before_expiry_hours
    )
    return store.current(utcnow()).cert_path


def trusting(certificate: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


async def test_plain_http_1_1(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{HOST}:{served.http_port}/healthz")
    assert response.http_version == "HTTP/1.1"
    assert response.json() == {"status": "ok"}


async def test_http_1_1_and_http_2_over_tls_by_alpn(served: Served) -> None:
    url = f"https://{HOST}:{served.https_port}/healthz"
    sni = {"sni_hostname": SERVER_NAME}
    async with httpx.AsyncClient(http2=True, verify=trusting(served.certificate)) as client:
        response = await client.get(url, extensions=sni)
    assert response.http_version == "HTTP/2"
    assert response.json() == {"status": "ok"}
    assert f'h3=":{served.https_port}"' in response.headers.get_list("alt-svc")[0]
    async with httpx.AsyncClient(http2=False, verify=trusting(served.certificate)) as client:
        response = await client.get(url, extensions=sni)
    assert response.http_version == "HTTP/1.1"
    assert response.json() == {"status": "ok"}


async def test_a_join_over_http_2_carries_a_valid_token(served: Served) -> None:
    base = f"https://{HOST}:{served.https_port}"
    sni = {"sni_hostname": SERVER_NAME}
    async with httpx.AsyncClient(http2=True, verify=trusting(served.certificate)) as client:
        created = await client.post(f"{base}/v1/meetings", json={"meeting_id": "m1"}, extensions=sni)
        joined = await client.post(
            f"{base}/v1/meetings/m1/join", json={"display_name": "Ada"}, extensions=sni
        )
    assert created.status_code == 201
    assert joined.status_code == 200
    assert joined.http_version == "HTTP/2"
    key = load_or_create_signing_key(signing_key_path(str(served.data_dir), ""))
    grant = TokenVerifier(key.public_key(), "darktower").verify(
        joined.json()["token"], meeting_id="m1", now=time.time()
    )
    assert grant.display_name == "Ada"


class H3Client(QuicConnectionProtocol):
    """The smallest HTTP/3 client: one request at a time, the whole response collected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._responses: dict[int, tuple[list[H3Event], asyncio.Future[None]]] = {}

    async def get(self, authority: str, path: str) -> tuple[dict[bytes, bytes], bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        events: list[H3Event] = []
        self._responses[stream_id] = (events, done)
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode())]
        self._http.send_headers(stream_id, [*headers, (b":path", path.encode())], end_stream=True)
        self.transmit()
        await asyncio.wait_for(done, DEADLINE_S)
        received: dict[bytes, bytes] = {}
        body = b""
        for event in events:
            if isinstance(event, HeadersReceived):
                received.update(event.headers)
            elif isinstance(event, DataReceived):
                body += event.data
        return received, body

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self._http.handle_event(event):
            if isinstance(h3_event, HeadersReceived | DataReceived) and h3_event.stream_id in self._responses:
                events, done = self._responses[h3_event.stream_id]
                events.append(h3_event)
                if h3_event.stream_ended and not done.done():
                    done.set_result(None)


async def test_http_3_over_quic(served: Served) -> None:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=SERVER_NAME)
    configuration.load_verify_locations(str(served.certificate))
    async with connect(
        HOST, served.https_port, configuration=configuration, create_protocol=H3Client
    ) as client:
        assert isinstance(client, H3Client)
        headers, body = await client.get(f"{SERVER_NAME}:{served.https_port}", "/healthz")
    assert headers[b":status"] == b"200"
    assert body == b'{"status":"ok"}'
