"""How the adapter writes to the network: transmits it skips lose nothing, GSO runs arrive as sent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hypothesis import given
from hypothesis import strategies as st

from darktower.client.transport import StreamData, WebTransportSession
from darktower.core.certs import ServingCertificate
from darktower.workers.sendstate import acknowledge_now, nothing_to_send
from darktower.workers.udp import DatagramWriter, run_end
from darktower.workers.webtransport import ServerSession, WebTransportListener, server_configuration

TIMEOUT = 10.0
REPLY_SIZE = 6000
"""Five packets: when an early one is lost, the ACK of the later ones declares it lost at once."""


class EchoHandler:
    """Answers each byte a client sends on a bidirectional stream with `REPLY_SIZE` copies of it."""

    def session_opened(self, session: ServerSession) -> None:
        pass

    def stream_data(self, session: ServerSession, stream_id: int, data: bytes, end_stream: bool) -> None:
        for byte in data:
            session.send_stream_data(stream_id, bytes([byte]) * REPLY_SIZE)

    def stream_reset(self, session: ServerSession, stream_id: int, code: int) -> None:
        pass

    def datagram_received(self, session: ServerSession, data: bytes) -> None:
        pass

    def session_closed(self, session: ServerSession, code: int, reason: str) -> None:
        pass


class LossyRelay(asyncio.DatagramProtocol):
    """Carries one client's datagrams to the server and back; once `dropping`, it drops every third
    full-size datagram the server sends."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.dropping = False
        self.full_size = 0
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr != self.server:
            self.client = addr
            self.transport.sendto(data, self.server)
            return
        if self.client is None:
            return
        if self.dropping and len(data) >= 1000:
            self.full_size += 1
            if self.full_size % 3 == 0:
                self.dropped += 1
                return
        self.transport.sendto(data, self.client)


@pytest.fixture
async def echo_listener(serving_certificate: ServingCertificate) -> AsyncIterator[WebTransportListener]:
    config = server_configuration(serving_certificate.cert_path, serving_certificate.key_path)
    listener = await WebTransportListener.listen("127.0.0.1", 0, config, EchoHandler())
    yield listener
    listener.close()


async def test_replies_arrive_whole_through_a_path_that_loses_packets(
    echo_listener: WebTransportListener, serving_certificate: ServingCertificate
) -> None:
    loop = asyncio.get_running_loop()
    relay_transport, relay = await loop.create_datagram_endpoint(
        lambda: LossyRelay(("127.0.0.1", echo_listener.port)), local_addr=("127.0.0.1", 0)
    )
    try:
        port = relay_transport.get_extra_info("sockname")[1]
        client = await WebTransportSession.connect(
            f"https://127.0.0.1:{port}/meetings/m",
            certificate_hashes=[serving_certificate.sha256],
            timeout=TIMEOUT,
        )
        relay.dropping = True
        stream = client.create_bidirectional_stream()
        async with asyncio.timeout(TIMEOUT):
            for request in range(40):
                client.send_stream_data(stream, bytes([request]))
                received = b""
                while len(received) < REPLY_SIZE:
                    event = await client.next_event()
                    assert isinstance(event, StreamData)
                    received += event.data
                assert received == bytes([request]) * REPLY_SIZE
        assert relay.dropped > 0
        await client.close()
    finally:
        relay_transport.close()


async def test_a_writer_delivers_every_datagram_in_order_with_or_without_gso() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    writer = DatagramWriter(transport)
    try:
        for receiver in receivers:
            receiver.bind(("127.0.0.1", 0))
            receiver.settimeout(TIMEOUT)
        first, second = (receiver.getsockname() for receiver in receivers)
        sizes = [1200] * 5 + [300, 1200, 1200, 40, 1200, 1300, 1300]
        datagrams = [(bytes([index]) * size, first) for index, size in enumerate(sizes)]
        datagrams[3:3] = [(b"other", second)]
        for _ in range(2):
            writer.send(datagrams)
            for receiver, address in zip(receivers, (first, second), strict=True):
                expected = [data for data, to in datagrams if to == address]
                assert [receiver.recv(65536) for _ in expected] == expected
            writer.close()
    finally:
        writer.close()
        transport.close()
        for receiver in receivers:
            receiver.close()


CLIENT_ADDRESS = ("127.0.0.1", 50000)
SERVER_ADDRESS = ("127.0.0.1", 4433)


def _deliver(sender: QuicConnection, receiver: QuicConnection, to: tuple[str, int], now: float) -> int:
    datagrams = sender.datagrams_to_send(now=now)
    for data, _ in datagrams:
        receiver.receive_datagram(data, to, now=now)
    return len(datagrams)


def _connected_pair(certificate: ServingCertificate) -> tuple[QuicConnection, QuicConnection, float]:
    """A client and a server connection past their handshake, in memory, and the simulated time."""
    client = QuicConnection(
        configuration=QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=0)
    )
    server = QuicConnection(
        configuration=server_configuration(certificate.cert_path, certificate.key_path),
        original_destination_connection_id=client.original_destination_connection_id,
    )
    now = 1.0
    client.connect(SERVER_ADDRESS, now=now)
    for _ in range(2):  # the handshake, then the ACKs it leaves due after the ACK delay
        while _deliver(client, server, CLIENT_ADDRESS, now) + _deliver(server, client, SERVER_ADDRESS, now):
            pass
        now += 0.01
    return client, server, now


def test_a_skipped_transmit_is_one_that_would_have_sent_nothing_while_a_peer_ends_its_streams(
    serving_certificate: ServingCertificate,
) -> None:
    """A publisher opens and ends one unidirectional stream per video group. Each ended stream raises the
    server's MAX_STREAMS, which aioquic sends in batches: in between, `nothing_to_send` must say so (or every
    packet of the publisher costs a transmit), and it must never say so when a transmit would send."""
    client, server, now = _connected_pair(serving_certificate)
    streams = server._local_max_streams_uni.value
    skipped_while_batching = 0
    for _ in range(streams):
        stream_id = client.get_next_available_stream_id(is_unidirectional=True)
        client.send_stream_data(stream_id, b"frame", end_stream=True)
        for _ in range(3):
            now += 0.01
            for connection in (client, server):
                timer = connection.get_timer()
                if timer is not None and timer <= now:
                    connection.handle_timer(now=now)
            _deliver(client, server, CLIENT_ADDRESS, now)
            while server.next_event() is not None:
                pass
            limit = server._local_max_streams_uni
            if nothing_to_send(server, now):
                skipped_while_batching += limit.value != limit.sent
                assert server.datagrams_to_send(now=now) == []
            else:
                _deliver(server, client, SERVER_ADDRESS, now)
    assert skipped_while_batching > 0
    assert server._local_max_streams_uni.sent > streams  # the batches did go out


def test_an_ack_the_server_would_delay_goes_out_with_the_next_transmit(
    serving_certificate: ServingCertificate,
) -> None:
    client, server, now = _connected_pair(serving_certificate)
    assert not acknowledge_now(server, now)
    stream_id = client.get_next_available_stream_id(is_unidirectional=True)
    client.send_stream_data(stream_id, b"frame")
    _deliver(client, server, CLIENT_ADDRESS, now)
    assert server.datagrams_to_send(now=now) == []  # aioquic alone would wait for its ACK delay
    assert client._loss.bytes_in_flight > 0
    assert acknowledge_now(server, now)
    assert _deliver(server, client, SERVER_ADDRESS, now) == 1
    assert client._loss.bytes_in_flight == 0
    assert not acknowledge_now(server, now)


ADDRESSES = [("127.0.0.1", 4433), ("127.0.0.1", 4434)]


@given(st.lists(st.tuples(st.sampled_from([1200, 1200, 1200, 500, 1350, 20]), st.sampled_from(ADDRESSES))))
def test_gso_runs_split_datagrams_into_the_longest_runs_one_send_can_carry(
    spec: list[tuple[int, tuple[str, int]]],
) -> None:
    datagrams = [(bytes(size), address) for size, address in spec]
    start = 0
    while start < len(datagrams):
        end = run_end(datagrams, start)
        run = datagrams[start:end]
        segment = len(run[0][0])
        assert 1 <= len(run) <= 64
        assert sum(len(data) for data, _ in run) <= 65000
        assert {address for _, address in run} == {run[0][1]}
        assert all(len(data) == segment for data, _ in run[:-1])
        assert len(run[-1][0]) <= segment
        if end < len(datagrams) and len(run) < 64 and len(run[-1][0]) == segment:
            following, address = datagrams[end]
            fits = sum(len(data) for data, _ in run) + len(following) <= 65000
            assert address != run[0][1] or len(following) > segment or not fits
        start = end
