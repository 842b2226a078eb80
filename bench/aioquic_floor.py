"""aioquic's own cost per packet, the floor every Dark Tower forwarding figure is compared with.

Two in-memory `QuicConnection`s, no sockets: the server sends DATAGRAM frames (one per UDP datagram) or stream
data, the client receives and acknowledges as a real peer would, and only the time spent inside the server's
calls is counted (sending, building packets, and processing the client's ACKs). That is the work a server
cannot avoid for a delivered packet, whatever it forwards.

    python bench/aioquic_floor.py [--packets N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from darktower.core.certs import CertificateStore, utcnow

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
DATAGRAM_PAYLOAD = 1150
"""A DATAGRAM frame of this size fills one 1,200-byte QUIC packet."""


@dataclass(frozen=True)
class Floor:
    us_per_datagram: float
    us_per_stream_packet: float
    datagram_packets: int
    stream_packets: int


class _Pair:
    """A connected client/server pair that exchanges packets through lists, timing only the server."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        server_config = QuicConfiguration(
            is_client=False, alpn_protocols=["bench"], max_datagram_frame_size=65536
        )
        server_config.load_cert_chain(cert_path, key_path)
        client_config = QuicConfiguration(
            is_client=True, alpn_protocols=["bench"], max_datagram_frame_size=65536
        )
        client_config.verify_mode = 0  # ssl.CERT_NONE: the bench trusts its own certificate
        self.now = 0.0
        self.client = QuicConnection(configuration=client_config)
        self.client.connect(SERVER_ADDR, now=self.now)
        self.server = QuicConnection(
            configuration=server_config,
            original_destination_connection_id=self.client.original_destination_connection_id,
        )
        self.server_ns = 0
        self.delivered = 0
        for _ in range(10):
            self._client_to_server()
            self._server_to_client()

    def _client_to_server(self) -> None:
        for data, _ in self.client.datagrams_to_send(now=self.now):
            start = time.perf_counter_ns()
            self.server.receive_datagram(data, CLIENT_ADDR, now=self.now)
            self.server_ns += time.perf_counter_ns() - start

    def _server_to_client(self) -> int:
        start = time.perf_counter_ns()
        out = self.server.datagrams_to_send(now=self.now)
        self.server_ns += time.perf_counter_ns() - start
        for data, _ in out:
            self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
        return len(out)

    def step(self) -> None:
        """One round: server packets to the client, the client's ACKs back, time moves 1 ms."""
        self.delivered += self._server_to_client()
        self._client_to_server()
        self.now += 0.001

    def reset_counters(self) -> None:
        self.server_ns = 0
        self.delivered = 0


def measure(packets: int) -> Floor:
    with tempfile.TemporaryDirectory() as tmp:
        cert = CertificateStore(Path(tmp), timedelta(days=1), timedelta(hours=1)).rotate(utcnow())
        pair = _Pair(cert.cert_path, cert.key_path)
        payload = bytes(DATAGRAM_PAYLOAD)
        pair.reset_counters()
        while pair.delivered < packets:
            start = time.perf_counter_ns()
            for _ in range(8):
                pair.server.send_datagram_frame(payload)
            pair.server_ns += time.perf_counter_ns() - start
            pair.step()
        datagram_us = pair.server_ns / pair.delivered / 1000
        datagram_packets = pair.delivered

        pair = _Pair(cert.cert_path, cert.key_path)
        pair.reset_counters()
        chunk = bytes(8 * 1024)
        stream_id = pair.server.get_next_available_stream_id(is_unidirectional=True)
        while pair.delivered < packets:
            start = time.perf_counter_ns()
            pair.server.send_stream_data(stream_id, chunk)
            pair.server_ns += time.perf_counter_ns() - start
            pair.step()
        stream_us = pair.server_ns / pair.delivered / 1000
        return Floor(datagram_us, stream_us, datagram_packets, pair.delivered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    floor = measure(parser.parse_args().packets)
    print(
        f"aioquic floor: {floor.us_per_datagram:.1f} us per 1,200-byte datagram ({floor.datagram_packets} packets)"
    )
    print(
        f"aioquic floor: {floor.us_per_stream_packet:.1f} us per stream packet ({floor.stream_packets} packets)"
    )


if __name__ == "__main__":
    main()
