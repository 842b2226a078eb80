"""The server-side WebTransport adapter on its own: certificate swaps, send-queue accounting, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from darktower.client.transport import (
    CertificateMismatchError,
    StreamData,
    WebTransportSession,
)
from darktower.core.certs import CertificateStore, ServingCertificate, utcnow
from darktower.workers.webtransport import (
    MIN_SEND_BUDGET,
    ServerSession,
    WebTransportListener,
    server_configuration,
)

TIMEOUT = 5.0


class Recorder:
    """Keeps the sessions it is given and the stream data they receive."""

    def __init__(self) -> None:
        self.opened: asyncio.Queue[ServerSession] = asyncio.Queue()
        self.data: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.closed: list[tuple[int, int, str]] = []

    def session_opened(self, session: ServerSession) -> None:
        self.opened.put_nowait(session)

    def stream_data(self, session: ServerSession, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.data.put_nowait((stream_id, data))

    def stream_reset(self, session: ServerSession, stream_id: int, code: int) -> None:
        pass

    def datagram_received(self, session: ServerSession, data: bytes) -> None:
        pass

    def session_closed(self, session: ServerSession, code: int, reason: str) -> None:
        self.closed.append((session.id, code, reason))


@pytest.fixture
async def listener(
    serving_certificate: ServingCertificate,
) -> AsyncIterator[tuple[WebTransportListener, Recorder]]:
    recorder = Recorder()
    config = server_configuration(serving_certificate.cert_path, serving_certificate.key_path)
    listener = await WebTransportListener.listen("127.0.0.1", 0, config, recorder)
    yield listener, recorder
    listener.close()


async def open_session(
    listener: WebTransportListener, recorder: Recorder, pin: bytes
) -> tuple[WebTransportSession, ServerSession]:
    client = await WebTransportSession.connect(
        f"https://127.0.0.1:{listener.port}/meetings/m", certificate_hashes=[pin], timeout=TIMEOUT
    )
    async with asyncio.timeout(TIMEOUT):
        return client, await recorder.opened.get()


async def test_a_swapped_certificate_serves_new_connections_while_old_ones_go_on(
    listener: tuple[WebTransportListener, Recorder], serving_certificate: ServingCertificate, tmp_path: Path
) -> None:
    server, recorder = listener
    old_client, old_session = await open_session(server, recorder, serving_certificate.sha256)
    new = CertificateStore(tmp_path, timedelta(days=5), timedelta(days=1)).rotate(utcnow())
    server.load_certificate(new.cert_path, new.key_path)
    with pytest.raises(CertificateMismatchError):
        await open_session(server, recorder, serving_certificate.sha256)
    new_client, _ = await open_session(server, recorder, new.sha256)
    stream = old_client.create_bidirectional_stream()
    old_client.send_stream_data(stream, b"still here")
    async with asyncio.timeout(TIMEOUT):
        assert await recorder.data.get() == (stream, b"still here")
    assert old_session.send_stream_data(stream, b"yes", end_stream=True)
    async with asyncio.timeout(TIMEOUT):
        event = await old_client.next_event()
    assert event == StreamData(stream, b"yes", end_stream=True, unidirectional=False)
    await old_client.close()
    await new_client.close()


async def test_a_reading_client_drains_a_stream_and_the_queue_accounting_follows(
    listener: tuple[WebTransportListener, Recorder], serving_certificate: ServingCertificate
) -> None:
    server, recorder = listener
    client, session = await open_session(server, recorder, serving_certificate.sha256)
    stream = session.open_uni_stream()
    assert stream is not None
    payload = bytes(range(256)) * 1024
    assert session.write(stream, payload, end_stream=True)
    assert stream.unsent > MIN_SEND_BUDGET
    received = b""
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await client.next_event()
            assert isinstance(event, StreamData)
            received += event.data
            if event.end_stream:
                break
    assert received == payload
    assert stream.unsent == 0
    assert session.send_budget(200) >= MIN_SEND_BUDGET
    await client.close()


async def test_sends_to_a_closed_session_or_oversized_datagrams_are_dropped(
    listener: tuple[WebTransportListener, Recorder], serving_certificate: ServingCertificate
) -> None:
    server, recorder = listener
    client, session = await open_session(server, recorder, serving_certificate.sha256)
    assert session.send_datagram(bytes(1000))
    assert not session.send_datagram(bytes(1200))
    session.close(4, "done")
    session.close(4, "again")
    assert recorder.closed == [(session.id, 4, "done")]
    assert not session.send_datagram(b"x")
    assert session.open_uni_stream() is None
    assert not session.send_stream_data(0, b"x")
    await client.close()
