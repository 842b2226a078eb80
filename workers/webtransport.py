"""Server side of WebTransport over HTTP/3 on aioquic: accepts sessions on `/meetings/{id}` and hands each
session's streams, datagrams and end to a `SessionHandler`.

One `WebTransportProtocol` serves one QUIC connection (created by aioquic's `QuicServer`). It answers an
extended CONNECT (`:protocol webtransport`) on `/meetings/{meeting_id}` with 200, any other path with 404
and any other request with 400. A `ServerSession` is what the handler sends through; its `id` is unique in
the process for its lifetime. The handler hears of every session's end exactly once, whether the client
closed it, the connection dropped, or the server called `ServerSession.close`.

Sending never writes to the socket directly: each send marks its connection, and `TransmitBatch` writes
every marked connection out once at the end of the event-loop iteration, so forwarding a burst of packets
to many subscribers costs one `transmit` per subscriber. A received datagram (a subscriber's ACK, a
publisher's media) is not followed by a transmit of its own connection when that connection surely has
nothing to send yet (`darktower.workers.sendstate`); an ACK that aioquic would send from a timer 1 ms later
goes out with that end-of-iteration transmit instead. Datagrams leave through a `DatagramWriter` (UDP GSO where available).

aioquic has no public view of a stream's send queue, the congestion window or pending datagrams; the few
reads of its private state are confined to this module (marked) and `sendstate`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Protocol, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.stream import QuicStreamSender

from darktower.proto.webtransport import (
    CLOSE_WEBTRANSPORT_SESSION,
    CapsuleError,
    CapsuleReader,
    application_to_http3,
    datagram_prefix,
    encode_close_session,
    http3_to_application,
    parse_close_session,
    read_varint,
    uni_stream_header,
)
from darktower.workers.cid import issue_worker_cids
from darktower.workers.sendstate import acknowledge_now, nothing_to_send
from darktower.workers.udp import DatagramWriter

log = logging.getLogger(__name__)

MAX_DATAGRAM_FRAME_SIZE: Final = 65536
MEETING_PATH: Final = re.compile(rb"/meetings/([A-Za-z0-9_-]{1,64})")
SESSION_GONE: Final = 0x170D7B68
"""HTTP/3 code (WEBTRANSPORT_SESSION_GONE) for the streams of a session that has ended."""
_PACKET_OVERHEAD: Final = 1 + 20 + 4 + 16 + 1 + 2
"""Largest short header, AEAD tag and DATAGRAM frame header: what a datagram's payload cannot use."""
_MAX_PENDING_DATAGRAMS: Final = 1024
"""Datagrams a congested connection may hold before new ones are dropped (stale audio is useless)."""
MIN_SEND_BUDGET: Final = 64 * 1024
"""Backlog always allowed, whatever the rate estimate says (a keyframe or two)."""
_MAX_SEND_BUDGET: Final = 8 * 1024 * 1024


class SessionHandler(Protocol):
    """What the protocol reports; every call happens inside the event loop, none may block."""

    def session_opened(self, session: ServerSession) -> None: ...

    def stream_data(self, session: ServerSession, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Bytes on a client-opened WebTransport stream (the first call for a stream id opens it)."""

    def stream_reset(self, session: ServerSession, stream_id: int, code: int) -> None:
        """The client abandoned one of its streams; `code` is its WebTransport application code."""

    def datagram_received(self, session: ServerSession, data: bytes) -> None: ...

    def session_closed(self, session: ServerSession, code: int, reason: str) -> None: ...


class TransmitBatch:
    """Defers transmits to the end of the event-loop iteration, so each connection touched by a burst of
    received datagrams (or by sends made outside a receive) is written out once for the whole burst."""

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[WebTransportProtocol] = []
        self._scheduled = False

    def mark(self, protocol: WebTransportProtocol) -> None:
        if protocol.transmit_pending:
            return
        protocol.transmit_pending = True
        self._pending.append(protocol)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def flush(self) -> None:
        pending = self._pending
        while pending:
            self._pending = []
            for protocol in pending:
                protocol.transmit_pending = False
                protocol.transmit()
            pending = self._pending

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()


class OutgoingStream:
    """A unidirectional stream the server opened; `unsent` is what still waits in aioquic's send buffer."""

    __slots__ = ("_sender", "stream_id", "written")

    def __init__(self, stream_id: int, sender: QuicStreamSender, written: int) -> None:
        self.stream_id = stream_id
        self._sender = sender
        self.written = written

    @property
    def unsent(self) -> int:
        return self.written - self._sender.highest_offset


class ServerSession:
    """One WebTransport session; the handler's handle for sending to its client."""

    __slots__ = (
        "_batch",
        "_bidi",
        "_capsules",
        "_datagram_limit",
        "_h3",
        "_incoming",
        "_outgoing",
        "_prefix",
        "_protocol",
        "_quic",
        "_uni_header",
        "closed",
        "connect_stream_id",
        "id",
        "meeting_id",
    )

    def __init__(self, session_id: int, meeting_id: str, protocol: WebTransportProtocol) -> None:
        self.id = next(protocol.ids)
        self.meeting_id = meeting_id
        self.connect_stream_id = session_id
        self.closed = False
        self._protocol = protocol
        self._quic = protocol.quic
        self._h3 = protocol.h3
        self._batch = protocol.batch
        self._prefix = datagram_prefix(session_id)
        self._uni_header = uni_stream_header(session_id)
        self._datagram_limit = (
            self._quic.configuration.max_datagram_size - _PACKET_OVERHEAD - len(self._prefix)
        )
        self._capsules = CapsuleReader()
        self._outgoing: dict[int, OutgoingStream] = {}
        self._incoming: set[int] = set()
        self._bidi: set[int] = set()

    # --- sending (each returns False when the data was dropped: session or stream gone, or too large) -----

    def send_datagram(self, data: bytes | memoryview) -> bool:
        quic = self._quic
        if (
            self.closed
            or len(data) > self._datagram_limit
            or len(quic._datagrams_pending) >= _MAX_PENDING_DATAGRAMS  # noqa: SLF001
        ):
            return False
        quic.send_datagram_frame(self._prefix + data)
        self._batch.mark(self._protocol)
        return True

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> bool:
        """Writes on a stream the client opened (a bidirectional one)."""
        if self.closed:
            return False
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (ValueError, RuntimeError):
            return False
        if end_stream:
            self._bidi.discard(stream_id)
        self._batch.mark(self._protocol)
        return True

    def open_uni_stream(self) -> OutgoingStream | None:
        if self.closed:
            return None
        quic = self._quic
        stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
        quic.send_stream_data(stream_id, self._uni_header)
        sender = quic._streams[stream_id].sender  # noqa: SLF001
        stream = self._outgoing[stream_id] = OutgoingStream(stream_id, sender, len(self._uni_header))
        self._batch.mark(self._protocol)
        return stream

    def write(self, stream: OutgoingStream, data: bytes | memoryview, end_stream: bool = False) -> bool:
        """`data` may be a view that is valid only during this call: aioquic copies it into the stream's
        send buffer (its annotation says bytes; any bytes-like object works)."""
        if self.closed:
            return False
        try:
            self._quic.send_stream_data(stream.stream_id, cast("bytes", data), end_stream)
        except (ValueError, RuntimeError):
            self._outgoing.pop(stream.stream_id, None)
            return False
        stream.written += len(data)
        if end_stream:
            self._outgoing.pop(stream.stream_id, None)
        self._batch.mark(self._protocol)
        return True

    def reset(self, stream: OutgoingStream, code: int = 0) -> None:
        """Abandons a stream the server opened; what was not sent yet is dropped."""
        if self._outgoing.pop(stream.stream_id, None) is not None and not self.closed:
            self._quic.reset_stream(stream.stream_id, application_to_http3(code))
            self._batch.mark(self._protocol)

    def send_budget(self, queued_ms: int) -> int:
        """Bytes the connection can send in `queued_ms` at its current rate (congestion window / RTT)."""
        recovery = self._quic._loss  # noqa: SLF001
        rtt = recovery._rtt_smoothed or self._quic.configuration.initial_rtt  # noqa: SLF001
        budget = int(recovery.congestion_window * queued_ms / 1000 / rtt)
        return min(max(budget, MIN_SEND_BUDGET), _MAX_SEND_BUDGET)

    def flush(self) -> None:
        """Writes what is queued to the network now instead of at the end of the batch."""
        if self._protocol.transmit_pending:
            self._protocol.transmit()

    def close(self, code: int = 0, reason: str = "") -> None:
        """Sends CLOSE_WEBTRANSPORT_SESSION and ends the CONNECT stream; the handler hears `session_closed`."""
        if self.closed:
            return
        try:
            self._h3.send_data(self.connect_stream_id, encode_close_session(code, reason), end_stream=True)
        except Exception:
            log.debug("close capsule not sent", exc_info=True, extra={"meeting_id": self.meeting_id})
        self._protocol.session_ended(self, code, reason, peer=False)

    # --- protocol side -----------------------------------------------------------------------------

    def tear_down(self, connection_alive: bool) -> None:
        """Marks the session closed; with the connection alive, ends its streams (bidirectional ones with FIN
        so a final signaling message still arrives, the rest abruptly)."""
        self.closed = True
        if not connection_alive:
            return
        quic = self._quic
        for stream_id in self._outgoing:
            quic.reset_stream(stream_id, SESSION_GONE)
        for stream_id in self._bidi:
            try:
                quic.send_stream_data(stream_id, b"", end_stream=True)
            except (ValueError, RuntimeError):
                continue
        for stream_id in self._incoming:
            try:
                quic.stop_stream(stream_id, SESSION_GONE)
            except ValueError:
                continue
        self._outgoing.clear()
        self._bidi.clear()
        self._incoming.clear()
        self._batch.mark(self._protocol)

    def track_incoming(self, stream_id: int, ended: bool) -> None:
        if not stream_id & 2:
            self._bidi.add(stream_id)
        if ended:
            self._incoming.discard(stream_id)
        else:
            self._incoming.add(stream_id)

    def owns_incoming(self, stream_id: int) -> bool:
        return stream_id in self._incoming

    def feed_capsules(self, data: bytes) -> tuple[int, str] | None:
        """The close code and reason once a CLOSE_WEBTRANSPORT_SESSION capsule has arrived."""
        for capsule in self._capsules.feed(data):
            if capsule.type == CLOSE_WEBTRANSPORT_SESSION:
                return parse_close_session(capsule.payload)
        return None


class WebTransportProtocol(QuicConnectionProtocol):
    """One QUIC connection carrying HTTP/3 and its WebTransport sessions."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: QuicStreamHandler | None = None,
        *,
        handler: SessionHandler,
        batch: TransmitBatch,
        writer: DatagramWriter,
        ids: Iterator[int],
    ) -> None:
        super().__init__(quic, stream_handler)
        self.quic = quic
        self.h3 = H3Connection(quic, enable_webtransport=True)
        self.handler = handler
        self.batch = batch
        self.ids = ids
        self._writer = writer
        self.transmit_pending = False
        self._deadline: float | None = None
        """The connection's timer deadline as of the last transmit."""
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = 0.0
        self.on_terminated: Callable[[WebTransportProtocol], None] | None = None
        self.sessions: dict[int, ServerSession] = {}
        self._terminated = False

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        now = self._loop.time()
        self._quic.receive_datagram(cast("bytes", data), addr, now=now)
        self._process_events()
        if self.transmit_pending:
            return
        if nothing_to_send(self._quic, now) and not acknowledge_now(self._quic, now):
            self._arm_timer()
        else:
            self.batch.mark(self)

    def transmit(self) -> None:
        self._transmit(self._loop.time())

    def _transmit(self, now: float) -> None:
        """aioquic's transmit, writing through the listener's `DatagramWriter`, with a lazier timer: the
        armed one is kept when the connection's deadline moves later (it does after nearly every packet
        sent or acknowledged) and re-armed when it fires before the real deadline; cancelling and re-arming
        it on every transmit cost more."""
        datagrams = self._quic.datagrams_to_send(now=now)
        if datagrams:
            self._writer.send(datagrams)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self._deadline = self._quic.get_timer()
        wakeup = self._wakeup
        if wakeup is not None:
            if deadline is not None and deadline >= self._wakeup_at:
                return
            wakeup.cancel()
            self._wakeup = None
        if deadline is not None:
            self._wakeup = self._loop.call_at(deadline, self._on_timer)
            self._wakeup_at = deadline

    def _on_timer(self) -> None:
        """aioquic's timer handling, except that what follows it is sent at the deadline's time too: the
        event loop's timers fire up to a millisecond early, and at the loop's own time a due ACK is not due
        yet, which cost aioquic an empty transmit and a second wake-up per ACK."""
        self._wakeup = None
        deadline = self._deadline
        if deadline is None:
            return
        if deadline > self._wakeup_at:
            self._wakeup = self._loop.call_at(deadline, self._on_timer)
            self._wakeup_at = deadline
            return
        now = max(deadline, self._loop.time())
        self._quic.handle_timer(now=now)
        self._process_events()
        self._transmit(now)

    def quic_event_received(self, event: QuicEvent) -> None:
        if type(event) is DatagramFrameReceived:
            self._on_datagram(event.data)
        elif type(event) is StreamDataReceived:
            for h3_event in self.h3.handle_event(event):
                self._on_h3_event(h3_event)
        elif type(event) is StreamReset:
            self._on_stream_reset(event)
        elif type(event) is StopSendingReceived:
            self.h3.handle_event(event)
        elif type(event) is ConnectionTerminated:
            self._on_terminated(event)

    def _on_datagram(self, data: bytes) -> None:
        if data and data[0] < 0x40:
            session = self.sessions.get(data[0] * 4)
            start = 1
        else:
            head = read_varint(data, 0)
            if head is None:
                return
            session = self.sessions.get(head[0] * 4)
            start = head[1]
        if session is not None:
            self.handler.datagram_received(session, data[start:])

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, WebTransportStreamDataReceived):
            session = self.sessions.get(event.session_id)
            if session is None:
                return
            session.track_incoming(event.stream_id, event.stream_ended)
            self.handler.stream_data(session, event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, DataReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                self._on_connect_stream_data(session, event.data, event.stream_ended)
        elif isinstance(event, HeadersReceived) and event.stream_id not in self.sessions:
            self._on_request(event)

    def _on_request(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        headers = dict(event.headers)
        path = headers.get(b":path", b"").split(b"?", 1)[0]
        if headers.get(b":method") != b"CONNECT" or headers.get(b":protocol") != b"webtransport":
            self.h3.send_headers(stream_id, [(b":status", b"400")], end_stream=True)
        elif (match := MEETING_PATH.fullmatch(path)) is None:
            self.h3.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
        else:
            session = ServerSession(stream_id, match.group(1).decode(), self)
            self.sessions[stream_id] = session
            self.h3.send_headers(
                stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
            )
            self.handler.session_opened(session)
        self.batch.mark(self)

    def _on_connect_stream_data(self, session: ServerSession, data: bytes, ended: bool) -> None:
        try:
            close = session.feed_capsules(data)
        except CapsuleError as exc:
            session.close(0, f"malformed capsule: {exc}")
            return
        if close is not None:
            self.session_ended(session, *close, peer=True)
        elif ended:
            self.session_ended(session, 0, "", peer=True)

    def _on_stream_reset(self, event: StreamReset) -> None:
        stream_id = event.stream_id
        code = http3_to_application(event.error_code) or 0
        session = self.sessions.get(stream_id)
        if session is not None:
            self.session_ended(session, code, "the client reset the session", peer=True)
        else:
            for session in list(self.sessions.values()):
                if session.owns_incoming(stream_id):
                    session.track_incoming(stream_id, ended=True)
                    self.handler.stream_reset(session, stream_id, code)
        self.h3.handle_event(event)

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        self._terminated = True
        reason = f"connection closed: {event.reason_phrase or f'error 0x{event.error_code:x}'}"
        for session in list(self.sessions.values()):
            self.session_ended(session, 0, reason, peer=True)
        if self.on_terminated is not None:
            self.on_terminated(self)

    def session_ended(self, session: ServerSession, code: int, reason: str, *, peer: bool) -> None:
        """Ends a session once: its streams are ended and the handler told."""
        if session.closed:
            return
        self.sessions.pop(session.connect_stream_id, None)
        alive = not self._terminated
        if peer and alive:
            try:
                self.h3.send_data(session.connect_stream_id, b"", end_stream=True)
            except Exception:
                log.debug("CONNECT stream already ended", extra={"meeting_id": session.meeting_id})
        session.tear_down(alive)
        self.handler.session_closed(session, code, reason)

    def close_all(self, code: int, reason: str) -> None:
        """Closes every session of this connection (server shutdown)."""
        for session in list(self.sessions.values()):
            session.close(code, reason)


def server_configuration(cert_path: Path, key_path: Path) -> QuicConfiguration:
    """HTTP/3 with datagrams, as browsers' WebTransport expects; the certificate can be swapped later."""
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE
    )
    configuration.load_cert_chain(cert_path, key_path)
    return configuration


class WebTransportListener:
    """The UDP socket and every connection on it."""

    def __init__(self, configuration: QuicConfiguration, handler: SessionHandler) -> None:
        loop = asyncio.get_running_loop()
        self.configuration = configuration
        self.connections: set[WebTransportProtocol] = set()
        self.batch = TransmitBatch(loop)
        self._handler = handler
        self._ids = itertools.count(1)
        self._server: QuicServer | None = None
        self._writer: DatagramWriter | None = None
        self._worker_index: int | None = None
        self.port = 0

    @classmethod
    async def listen(
        cls,
        host: str,
        port: int,
        configuration: QuicConfiguration,
        handler: SessionHandler,
        *,
        sock: socket.socket | None = None,
        worker_index: int | None = None,
    ) -> WebTransportListener:
        """Serves on `host:port`, or on `sock` (bound already, e.g. one of a reuseport group; `host` and
        `port` are then unused). With `worker_index`, every connection issues only CIDs naming that worker
        (`darktower.workers.cid`), so the group's steering program keeps its datagrams on this process."""
        listener = cls(configuration, handler)
        listener._worker_index = worker_index
        loop = asyncio.get_running_loop()

        def protocol() -> QuicServer:
            return QuicServer(configuration=configuration, create_protocol=listener._create_protocol)

        if sock is None:
            transport, server = await loop.create_datagram_endpoint(protocol, local_addr=(host, port))
        else:
            transport, server = await loop.create_datagram_endpoint(protocol, sock=sock)
        listener._server = server
        listener._writer = DatagramWriter(transport)
        listener.port = transport.get_extra_info("sockname")[1]
        return listener

    def load_certificate(self, cert_path: Path, key_path: Path) -> None:
        """Serves this certificate to connections made from now on; open ones keep theirs."""
        self.configuration.load_cert_chain(cert_path, key_path)

    def _create_protocol(
        self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None
    ) -> WebTransportProtocol:
        assert self._writer is not None, "connections arrive only after listen() made the writer"
        if self._worker_index is not None:
            quic = issue_worker_cids(quic, self._worker_index)
        protocol = WebTransportProtocol(
            quic, stream_handler, handler=self._handler, batch=self.batch, writer=self._writer, ids=self._ids
        )
        protocol.on_terminated = self.connections.discard
        self.connections.add(protocol)
        return protocol

    def close(self, code: int = 0, reason: str = "") -> None:
        """Closes every session (the handler hears each end), then the connections and the socket."""
        for protocol in list(self.connections):
            protocol.close_all(code, reason)
        self.batch.flush()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._writer is not None:
            self._writer.close()
