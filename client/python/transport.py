"""A WebTransport-over-HTTP/3 client session on aioquic, shaped like the browser's `WebTransport`.

`WebTransportSession.connect` opens a QUIC connection, sends the extended CONNECT (`:protocol
webtransport`) and returns once the server answered 2xx. With `certificate_hashes` the server is accepted
the way browsers accept `serverCertificateHashes`: the SHA-256 of its DER certificate must be one of the
hashes, and the certificate must be valid now for less than 14 days in all; otherwise the chain is verified
(against `ca_file` when given). Every failure raises a `TransportError`.

Incoming streams, stream data and datagrams come out of `next_event` in arrival order; the session's end is
reported once as `SessionClosed` (the CLOSE_WEBTRANSPORT_SESSION code and reason when the server sent one),
which `next_event` keeps returning afterwards. Sends are queued and written out together on the next loop
iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection, Setting
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection, stream_is_unidirectional
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from darktower.core.errors import DarkTowerError
from darktower.proto.webtransport import (
    CLOSE_WEBTRANSPORT_SESSION,
    CapsuleError,
    CapsuleReader,
    application_to_http3,
    bidi_stream_header,
    datagram_prefix,
    encode_close_session,
    http3_to_application,
    parse_close_session,
    read_varint,
    uni_stream_header,
)

MAX_DATAGRAM_FRAME_SIZE: Final = 65536
_PACKET_OVERHEAD: Final = 1 + 20 + 4 + 16 + 1 + 2
"""Largest short header, AEAD tag and DATAGRAM frame header: what a datagram's payload cannot use."""
_MAX_HASH_VALIDITY: Final = timedelta(days=14)
_BAD_CERTIFICATE: Final = 0x100 + 42
"""QUIC CRYPTO_ERROR carrying TLS alert bad_certificate."""
IDLE_TIMEOUT_S: Final = 3.0
"""A session that hears nothing from the server this long is over. A server process that was killed sends
no CONNECTION_CLOSE, and aioquic does not act on stateless resets, so this is how a client learns it must
reconnect (to the worker's replacement) within seconds rather than a minute."""
KEEPALIVE_S: Final = 0.5
"""A PING this often keeps a quiet session well inside the idle timeout (the server acknowledges it)."""
_CLOSE_WAIT_S: Final = 1.0
"""How long `close` waits for the server to acknowledge the session's end before dropping the connection."""


class TransportError(DarkTowerError):
    """The WebTransport session could not be opened or used."""


class ConnectFailedError(TransportError):
    """No session: the server is unreachable, the handshake failed or timed out."""


class ConnectRefusedError(ConnectFailedError):
    """The server answered the CONNECT with a non-2xx `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CertificateMismatchError(ConnectFailedError):
    """The server's certificate is not one of the pinned hashes (or not acceptable for pinning)."""


class SessionClosedError(TransportError):
    """The session has ended; nothing more can be sent."""


class StreamClosedError(TransportError):
    """The stream cannot take more data: it was finished, reset, or stopped by the peer."""


class DatagramTooLargeError(TransportError):
    """The datagram does not fit in one QUIC packet (see `max_datagram_size`)."""


@dataclass(frozen=True, slots=True)
class StreamData:
    """Bytes on a stream; `end_stream` marks its end, `reset` an abrupt end (then `data` is empty)."""

    stream_id: int
    data: bytes
    end_stream: bool
    unidirectional: bool
    reset: bool = False


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session ended: `code`/`reason` from the peer's (or our) close capsule, 0 and a cause otherwise."""

    code: int
    reason: str


Event = StreamData | DatagramReceived | SessionClosed


def _split_url(url: str) -> tuple[str, int, str, str]:
    """(host, port, authority, path with query) of an https:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConnectFailedError(f"{url}: not an https:// URL with a host")
    try:
        port = parts.port or 443
    except ValueError:
        raise ConnectFailedError(f"{url}: bad port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, parts.netloc, path


class _ClientProtocol(QuicConnectionProtocol):
    """Hands every QUIC event to the session and tells it when a batch of events is over."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None) -> None:
        super().__init__(quic, stream_handler)
        self.session: WebTransportSession | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if self.session is not None:
            self.session.on_quic_event(event)

    def _process_events(self) -> None:
        super()._process_events()
        if self.session is not None:
            self.session.on_batch_end()

    def schedule_transmit(self) -> None:
        self._transmit_soon()


class WebTransportSession:
    def __init__(
        self, protocol: _ClientProtocol, transport: asyncio.DatagramTransport, quic: QuicConnection
    ) -> None:
        self._protocol = protocol
        self._transport = transport
        self._quic = quic
        self._h3 = H3Connection(quic, enable_webtransport=True)
        self._session_id = quic.get_next_available_stream_id()
        self._prefix = datagram_prefix(self._session_id)
        self._quarter = self._session_id // 4
        self._response: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        """The CONNECT's HTTP status, or None when the connection ended first."""
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: SessionClosed | None = None
        self._closing: SessionClosed | None = None
        self._terminated: ConnectionTerminated | None = None
        self._peer_finished = asyncio.Event()
        self._capsules = CapsuleReader()
        self._own_bidi: set[int] = set()
        self._incoming: set[int] = set()
        self._local_close_sent = False
        self._keepalive: asyncio.TimerHandle | None = None
        protocol.session = self

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        certificate_hashes: Sequence[bytes] = (),
        ca_file: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (the contract names it; asyncio.timeout applies it)
    ) -> WebTransportSession:
        host, port, authority, path = _split_url(url)
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            server_name=host,
            idle_timeout=IDLE_TIMEOUT_S,
        )
        if certificate_hashes:
            config.verify_mode = ssl.CERT_NONE
        elif ca_file is not None:
            config.load_verify_locations(cafile=ca_file)
        loop = asyncio.get_running_loop()
        session: WebTransportSession | None = None
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                family, _, _, _, address = infos[0]
                local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)  # noqa: S104
                quic = QuicConnection(configuration=config)
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _ClientProtocol(quic), local_addr=local
                )
                session = cls(protocol, transport, quic)
                await session._open(address, authority, path, certificate_hashes)
        except TimeoutError:
            if session is not None:
                session._abort("connect timed out")
            raise ConnectFailedError(f"{url}: no answer within {timeout} s") from None
        except OSError as exc:
            if session is not None:
                session._abort("connect failed")
            raise ConnectFailedError(f"{url}: {exc}") from None
        except BaseException:
            if session is not None:
                session._abort("connect failed")
            raise
        return session

    async def _open(
        self, address: NetworkAddress, authority: str, path: str, certificate_hashes: Sequence[bytes]
    ) -> None:
        self._protocol.connect(address)
        try:
            await self._protocol.wait_connected()
        except ConnectionError:
            raise ConnectFailedError(f"handshake failed: {self._termination_reason()}") from None
        if certificate_hashes:
            self._check_pinned(certificate_hashes)
        self._h3.send_headers(
            self._session_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b":protocol", b"webtransport"),
                (b"sec-webtransport-http3-draft02", b"1"),
                (b"user-agent", b"darktower-python"),
            ],
        )
        self._protocol.transmit()
        status = await self._response
        if status is None:
            raise ConnectFailedError(
                f"session ended before the server answered: {self._termination_reason()}"
            )
        if not 200 <= status < 300:
            raise ConnectRefusedError(status, f"server refused the session with HTTP {status}")
        settings = self._h3.received_settings or {}
        if settings.get(Setting.ENABLE_WEBTRANSPORT) != 1:
            raise ConnectFailedError("server did not enable WebTransport in its HTTP/3 settings")
        self._ping()

    def _ping(self) -> None:
        if self._closed is not None:
            return
        self._quic.send_ping(0)
        self._protocol.transmit()
        self._keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._ping)

    def _check_pinned(self, certificate_hashes: Sequence[bytes]) -> None:
        cert: x509.Certificate | None = self._quic.tls._peer_certificate  # noqa: SLF001 (no public accessor)
        problem = None
        if cert is None:
            problem = "the server sent no certificate"
        else:
            digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
            now = datetime.now(UTC)
            if digest not in certificate_hashes:
                problem = f"certificate sha-256 {digest.hex()} is not one of the pinned hashes"
            elif cert.not_valid_after_utc - cert.not_valid_before_utc >= _MAX_HASH_VALIDITY:
                problem = "a certificate accepted by hash must be valid for less than 14 days"
            elif not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
                problem = "the pinned certificate is not valid now"
        if problem is not None:
            self._protocol.close(error_code=_BAD_CERTIFICATE, reason_phrase="certificate mismatch")
            raise CertificateMismatchError(problem)

    # --- sending ------------------------------------------------------------------------------------

    @property
    def max_datagram_size(self) -> int:
        """Largest datagram payload that fits in one QUIC packet."""
        return self._quic.configuration.max_datagram_size - _PACKET_OVERHEAD - len(self._prefix)

    def create_bidirectional_stream(self) -> int:
        self._check_open()
        stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(stream_id, bidi_stream_header(self._session_id))
        self._own_bidi.add(stream_id)
        self._protocol.schedule_transmit()
        return stream_id

    def create_unidirectional_stream(self) -> int:
        self._check_open()
        stream_id = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self._quic.send_stream_data(stream_id, uni_stream_header(self._session_id))
        self._protocol.schedule_transmit()
        return stream_id

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._check_open()
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (ValueError, RuntimeError) as exc:
            raise StreamClosedError(f"stream {stream_id}: {exc}") from None
        self._protocol.schedule_transmit()

    def send_datagram(self, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_datagram_size:
            raise DatagramTooLargeError(f"datagram of {len(data)} bytes is over {self.max_datagram_size}")
        self._quic.send_datagram_frame(self._prefix + data)
        self._protocol.schedule_transmit()

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        self._check_open()
        try:
            self._quic.reset_stream(stream_id, application_to_http3(code))
        except ValueError as exc:
            raise StreamClosedError(f"stream {stream_id}: {exc}") from None
        self._protocol.schedule_transmit()

    def _check_open(self) -> None:
        if self._closed is not None:
            raise SessionClosedError(f"the session is closed ({self._closed.reason or self._closed.code})")

    # --- receiving ----------------------------------------------------------------------------------

    async def next_event(self) -> Event:
        while not self._events:
            if self._closed is not None:
                return self._closed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._events.popleft()

    def _push(self, event: Event) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_quic_event(self, event: QuicEvent) -> None:
        if type(event) is DatagramFrameReceived:
            self._on_datagram(event.data)
        elif type(event) is StreamDataReceived:
            data_event = event
            if data_event.stream_id in self._own_bidi:
                self._on_stream_data(data_event.stream_id, data_event.data, data_event.end_stream)
            else:
                self._on_h3_events(self._h3.handle_event(event))
        elif type(event) is StreamReset:
            self._on_reset(event)
        elif type(event) is ConnectionTerminated:
            self._terminated = event
            self._peer_finished.set()
            self._finish(SessionClosed(0, f"connection closed: {self._termination_reason()}"))
            asyncio.get_running_loop().call_soon(self._transport.close)

    def _on_datagram(self, data: bytes) -> None:
        if self._closed is not None:
            return
        if data and data[0] < 0x40:
            quarter, start = data[0], 1
        else:
            head = read_varint(data, 0)
            if head is None:
                return
            quarter, start = head
        if quarter == self._quarter:
            self._push(DatagramReceived(data[start:]))

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self._closed is None and (data or end_stream):
            self._push(StreamData(stream_id, data, end_stream, stream_is_unidirectional(stream_id)))
        if end_stream:
            self._own_bidi.discard(stream_id)
            self._incoming.discard(stream_id)

    def _on_reset(self, event: StreamReset) -> None:
        stream_id = event.stream_id
        if stream_id == self._session_id:
            self._peer_finished.set()
            code = http3_to_application(event.error_code)
            self._finish(SessionClosed(code or 0, "the server reset the session"))
        elif stream_id in self._own_bidi:
            self._own_bidi.discard(stream_id)
            self._push_reset(stream_id)
            return
        elif stream_id in self._incoming:
            self._incoming.discard(stream_id)
            self._push_reset(stream_id)
        self._h3.handle_event(event)

    def _push_reset(self, stream_id: int) -> None:
        if self._closed is None:
            self._push(
                StreamData(
                    stream_id,
                    b"",
                    end_stream=True,
                    unidirectional=stream_is_unidirectional(stream_id),
                    reset=True,
                )
            )

    def _on_h3_events(self, events: list[H3Event]) -> None:
        for event in events:
            if isinstance(event, WebTransportStreamDataReceived):
                if event.session_id == self._session_id:
                    if not event.stream_ended:
                        self._incoming.add(event.stream_id)
                    self._on_stream_data(event.stream_id, event.data, event.stream_ended)
            elif isinstance(event, HeadersReceived) and event.stream_id == self._session_id:
                self._on_response(event)
            elif isinstance(event, DataReceived) and event.stream_id == self._session_id:
                self._on_connect_stream_data(event.data, event.stream_ended)

    def _on_response(self, event: HeadersReceived) -> None:
        if self._response.done():
            return
        raw = dict(event.headers).get(b":status", b"0")
        self._response.set_result(int(raw) if raw.isdigit() else 0)

    def _on_connect_stream_data(self, data: bytes, ended: bool) -> None:
        try:
            for capsule in self._capsules.feed(data):
                if capsule.type == CLOSE_WEBTRANSPORT_SESSION and self._closing is None:
                    code, reason = parse_close_session(capsule.payload)
                    self._closing = SessionClosed(code, reason)
        except CapsuleError as exc:
            self._closing = self._closing or SessionClosed(0, f"malformed capsule from the server: {exc}")
            ended = True
        if ended:
            self._peer_finished.set()
            self._finish(self._closing or SessionClosed(0, "the server ended the session"))

    def _finish(self, closed: SessionClosed) -> None:
        """Records the end; it is reported after the rest of this batch's events (data sent before it)."""
        if self._closing is None:
            self._closing = closed

    def on_batch_end(self) -> None:
        closing = self._closing
        if self._closed is not None or closing is None:
            return
        self._closed = closing
        self._stop_keepalive()
        if not self._response.done():
            self._response.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._terminated is None:
            self._end_connect_stream()
            self._protocol.close(error_code=ErrorCode.H3_NO_ERROR)

    def _termination_reason(self) -> str:
        event = self._terminated
        if event is None:
            return "unknown"
        return event.reason_phrase or f"error 0x{event.error_code:x}"

    # --- closing ------------------------------------------------------------------------------------

    async def close(self, code: int = 0, reason: str = "") -> None:
        """Sends CLOSE_WEBTRANSPORT_SESSION, waits briefly for the server's end of the session, then
        closes the connection. Safe to call more than once and after the server closed the session."""
        if self._closed is None:
            self._closed = SessionClosed(code, reason)
            self._stop_keepalive()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if self._terminated is None:
                self._local_close_sent = True
                self._h3.send_data(self._session_id, encode_close_session(code, reason), end_stream=True)
                self._protocol.transmit()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CLOSE_WAIT_S):
                        await self._peer_finished.wait()
        if self._terminated is None:
            self._protocol.close(error_code=ErrorCode.H3_NO_ERROR)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await self._protocol.wait_closed()
        self._transport.close()

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def _end_connect_stream(self) -> None:
        if not self._local_close_sent:
            self._local_close_sent = True
            with contextlib.suppress(Exception):
                self._h3.send_data(self._session_id, b"", end_stream=True)

    def _abort(self, reason: str) -> None:
        """Drops a session that never opened: the connection is closed without waiting."""
        if self._closed is None:
            self._closed = SessionClosed(0, reason)
        self._stop_keepalive()
        if self._terminated is None:
            self._protocol.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase=reason)
        self._transport.close()
