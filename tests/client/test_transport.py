"""The WebTransport client against the server-side adapter over real UDP on 127.0.0.1, with an echo handler."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from darktower.client.transport import (
    CertificateMismatchError,
    ConnectFailedError,
    ConnectRefusedError,
    DatagramReceived,
    DatagramTooLargeError,
    Event,
    SessionClosed,
    SessionClosedError,
    StreamData,
    WebTransportSession,
)
from darktower.core.certs import ServingCertificate
from darktower.workers.webtransport import (
    OutgoingStream,
    ServerSession,
    WebTransportListener,
    server_configuration,
)

TIMEOUT = 5.0


@dataclass
class EchoHandler:
    """Echoes bidirectional streams on themselves, unidirectional streams on a server-opened one, and
    datagrams back; records opens, resets and ends."""

    opened: asyncio.Queue[ServerSession] = field(default_factory=asyncio.Queue)
    closed: asyncio.Queue[tuple[int, int, str]] = field(default_factory=asyncio.Queue)
    resets: asyncio.Queue[tuple[int, int]] = field(default_factory=asyncio.Queue)
    echoes: dict[int, OutgoingStream] = field(default_factory=dict)

    def session_opened(self, session: ServerSession) -> None:
        self.opened.put_nowait(session)

    def stream_data(self, session: ServerSession, stream_id: int, data: bytes, end_stream: bool) -> None:
        if not stream_id & 2:
            session.send_stream_data(stream_id, data, end_stream)
            return
        echo = self.echoes.get(stream_id)
        if echo is None:
            echo = session.open_uni_stream()
            assert echo is not None
            self.echoes[stream_id] = echo
        session.write(echo, data, end_stream)

    def stream_reset(self, session: ServerSession, stream_id: int, code: int) -> None:
        self.resets.put_nowait((stream_id, code))

    def datagram_received(self, session: ServerSession, data: bytes) -> None:
        session.send_datagram(data)

    def session_closed(self, session: ServerSession, code: int, reason: str) -> None:
        self.closed.put_nowait((session.id, code, reason))


@dataclass
class Echo:
    listener: WebTransportListener
    handler: EchoHandler
    certificate: ServingCertificate

    def url(self, path: str = "/meetings/m1") -> str:
        return f"https://127.0.0.1:{self.listener.port}{path}"

    async def session(self, path: str = "/meetings/m1") -> WebTransportSession:
        return await WebTransportSession.connect(
            self.url(path), certificate_hashes=[self.certificate.sha256], timeout=TIMEOUT
        )


@pytest.fixture
async def echo(serving_certificate: ServingCertificate) -> AsyncIterator[Echo]:
    handler = EchoHandler()
    config = server_configuration(serving_certificate.cert_path, serving_certificate.key_path)
    listener = await WebTransportListener.listen("127.0.0.1", 0, config, handler)
    yield Echo(listener, handler, serving_certificate)
    listener.close()


async def next_event(session: WebTransportSession) -> Event:
    async with asyncio.timeout(TIMEOUT):
        return await session.next_event()


async def read_stream(session: WebTransportSession) -> tuple[StreamData, bytes]:
    """Collects one stream's data up to its end; returns its first event and all its bytes."""
    first: StreamData | None = None
    data = b""
    while True:
        event = await next_event(session)
        assert isinstance(event, StreamData), event
        first = first or event
        assert event.stream_id == first.stream_id
        data += event.data
        if event.end_stream:
            return first, data


async def test_a_bidirectional_stream_is_echoed(echo: Echo) -> None:
    session = await echo.session()
    stream = session.create_bidirectional_stream()
    session.send_stream_data(stream, b"hello ")
    session.send_stream_data(stream, b"world" * 2000, end_stream=True)
    first, data = await read_stream(session)
    assert first.stream_id == stream
    assert not first.unidirectional
    assert data == b"hello " + b"world" * 2000
    await session.close()


async def test_a_unidirectional_stream_comes_back_on_a_server_stream(echo: Echo) -> None:
    session = await echo.session()
    stream = session.create_unidirectional_stream()
    payload = bytes(range(256)) * 100
    session.send_stream_data(stream, payload, end_stream=True)
    first, data = await read_stream(session)
    assert first.unidirectional
    assert first.stream_id != stream
    assert data == payload
    await session.close()


async def test_datagrams_are_echoed_byte_for_byte(echo: Echo) -> None:
    session = await echo.session()
    sent = [bytes([i]) * (i * 10 + 1) for i in range(20)]
    for data in sent:
        session.send_datagram(data)
    received: list[bytes] = []
    while len(received) < len(sent):
        event = await next_event(session)
        assert isinstance(event, DatagramReceived)
        received.append(event.data)
    assert sorted(received) == sorted(sent)
    await session.close()


async def test_a_datagram_over_one_packet_is_refused(echo: Echo) -> None:
    session = await echo.session()
    session.send_datagram(bytes(session.max_datagram_size))
    with pytest.raises(DatagramTooLargeError):
        session.send_datagram(bytes(session.max_datagram_size + 1))
    await session.close()


async def test_a_certificate_not_pinned_is_refused(echo: Echo) -> None:
    with pytest.raises(CertificateMismatchError, match="not one of the pinned hashes"):
        await WebTransportSession.connect(
            echo.url(), certificate_hashes=[hashlib.sha256(b"other").digest()], timeout=TIMEOUT
        )
    assert echo.handler.opened.empty()


async def test_without_pins_a_self_signed_certificate_fails_verification(echo: Echo) -> None:
    with pytest.raises(ConnectFailedError, match="handshake failed"):
        await WebTransportSession.connect(echo.url(), timeout=TIMEOUT)


@pytest.mark.parametrize("path", ["/other", "/meetings/", "/meetings/a/b", "/meetings/bad%20id"])
async def test_a_path_other_than_a_meeting_is_refused_with_404(echo: Echo, path: str) -> None:
    with pytest.raises(ConnectRefusedError) as refused:
        await echo.session(path)
    assert refused.value.status == 404


async def test_a_request_that_is_not_webtransport_gets_400(echo: Echo) -> None:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=0)
    status: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    class Plain(QuicConnectionProtocol):
        def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None) -> None:
            super().__init__(quic, stream_handler)
            self.h3 = H3Connection(quic)

        def quic_event_received(self, event: QuicEvent) -> None:
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived) and not status.done():
                    status.set_result(dict(h3_event.headers)[b":status"])

    async with connect(
        "127.0.0.1", echo.listener.port, configuration=config, create_protocol=Plain
    ) as client:
        assert isinstance(client, Plain)
        stream = client._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"x"),
            (b":path", b"/meetings/m1"),
        ]
        client.h3.send_headers(stream, headers, end_stream=True)
        client.transmit()
        async with asyncio.timeout(TIMEOUT):
            assert await status == b"400"


async def test_the_server_sees_the_meeting_id_and_the_clients_close_code(echo: Echo) -> None:
    session = await echo.session("/meetings/team-42?x=1")
    async with asyncio.timeout(TIMEOUT):
        opened = await echo.handler.opened.get()
    assert opened.meeting_id == "team-42"
    await session.close(5, "bye now")
    async with asyncio.timeout(TIMEOUT):
        assert await echo.handler.closed.get() == (opened.id, 5, "bye now")
    assert await session.next_event() == SessionClosed(5, "bye now")
    with pytest.raises(SessionClosedError):
        session.send_datagram(b"x")


async def test_a_server_close_reaches_the_client_with_its_code_and_stays(echo: Echo) -> None:
    session = await echo.session()
    async with asyncio.timeout(TIMEOUT):
        opened = await echo.handler.opened.get()
    opened.close(9, "go away")
    assert await next_event(session) == SessionClosed(9, "go away")
    assert await next_event(session) == SessionClosed(9, "go away")
    async with asyncio.timeout(TIMEOUT):
        assert await echo.handler.closed.get() == (opened.id, 9, "go away")
    await session.close()


async def test_data_sent_just_before_a_server_close_still_arrives(echo: Echo) -> None:
    session = await echo.session()
    stream = session.create_bidirectional_stream()
    session.send_stream_data(stream, b"ping")
    async with asyncio.timeout(TIMEOUT):
        opened = await echo.handler.opened.get()
    event = await next_event(session)
    assert event == StreamData(stream, b"ping", end_stream=False, unidirectional=False)
    opened.send_stream_data(stream, b"last words")
    opened.close(3, "done")
    assert await next_event(session) == StreamData(
        stream, b"last words", end_stream=True, unidirectional=False
    )
    assert await next_event(session) == SessionClosed(3, "done")
    await session.close()


async def test_a_client_stream_reset_reaches_the_handler_with_its_code(echo: Echo) -> None:
    session = await echo.session()
    stream = session.create_unidirectional_stream()
    session.send_stream_data(stream, b"partial")
    async with asyncio.timeout(TIMEOUT):
        await echo.handler.opened.get()
    await read_until_data(session)
    session.reset_stream(stream, 77)
    async with asyncio.timeout(TIMEOUT):
        assert await echo.handler.resets.get() == (stream, 77)
    await session.close()


async def read_until_data(session: WebTransportSession) -> None:
    event = await next_event(session)
    assert isinstance(event, StreamData)
    assert event.data == b"partial"


async def test_closing_the_server_ends_every_session(echo: Echo) -> None:
    sessions = [await echo.session(), await echo.session("/meetings/m2")]
    for _ in sessions:
        async with asyncio.timeout(TIMEOUT):
            await echo.handler.opened.get()
    echo.listener.close(12, "shutting down")
    for session in sessions:
        assert await next_event(session) == SessionClosed(12, "shutting down")
        await session.close()
    assert echo.handler.closed.qsize() == 2


async def test_an_unreachable_server_times_out(echo: Echo) -> None:
    port = echo.listener.port
    echo.listener.close()
    with pytest.raises(ConnectFailedError):
        await WebTransportSession.connect(
            f"https://127.0.0.1:{port}/meetings/m1", certificate_hashes=[b"x" * 32], timeout=0.5
        )


async def test_a_url_that_is_not_https_is_refused() -> None:
    with pytest.raises(ConnectFailedError, match="not an https"):
        await WebTransportSession.connect("http://127.0.0.1:1/meetings/m1")
