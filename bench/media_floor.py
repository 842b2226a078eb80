"""aioquic's own cost for the worker's actual traffic: the floor of one publisher relayed to N subscribers.

`aioquic_floor.py` measures bulk sending: eight full datagrams per transmit and one ACK per eight packets.
A meeting's traffic is burstier: a 100-byte audio packet alone every 20 ms and a 4 KB video frame (four
packets) every 33 ms, each burst acknowledged on its own by an aioquic client (1 ms ACK delay), and the
worker also receives the publisher's media and acknowledges it. Per delivered packet that costs aioquic
more, whoever drives it. This module replays the synthetic media of `darktower.client.media` through two
in-memory `QuicConnection`s on a simulated clock (no sockets) and times only the server's calls that a
perfect adapter could not avoid: sends, `datagrams_to_send` calls that return packets, receiving, timers.

- egress: the server sends one subscriber's media (audio as DATAGRAM frames, video on one unidirectional
  stream per group) and processes the client's ACKs;
- ingest: the client sends the same media and the server receives and acknowledges it.

`RelayFloor.us_per_packet(n)` combines them for one publisher and `n` subscribers: all server CPU over all
packets the server delivers (media to subscribers, ACKs to the publisher), as `worker_bench.py` counts.

    python bench/media_floor.py [--seconds S]
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

from darktower.client.media import MediaKind, OutgoingFrame, source_for
from darktower.core.certs import CertificateStore, utcnow
from darktower.proto.webtransport import datagram_prefix, uni_stream_header

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
STEP_S = 0.0002
"""Simulated clock resolution: both sides see each other's packets within one step."""
SESSION_ID = 0


@dataclass(frozen=True)
class RelayFloor:
    egress_ns_per_s: float
    egress_packets_per_s: float
    ingest_ns_per_s: float
    ingest_acks_per_s: float

    def us_per_packet(self, subscribers: int) -> float:
        ns = self.ingest_ns_per_s + subscribers * self.egress_ns_per_s
        return ns / (self.ingest_acks_per_s + subscribers * self.egress_packets_per_s) / 1000


class _Link:
    """A connected client/server pair on a simulated clock; only the server's work is timed."""

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
        self.server_sent = 0
        self._stream: dict[QuicConnection, int] = {}
        for _ in range(1000):
            self.step()
        self.server_ns = self.server_sent = 0

    def send(self, sender: QuicConnection, frame: OutgoingFrame) -> None:
        """Puts one frame on the wire the way the worker (or a publisher) does."""
        start = time.perf_counter_ns()
        if frame.kind == "audio":
            sender.send_datagram_frame(datagram_prefix(SESSION_ID) + frame.data)
        else:
            stream_id = self._stream.get(sender)
            if frame.object_seq == 0:
                if stream_id is not None:
                    sender.send_stream_data(stream_id, b"", end_stream=True)
                stream_id = self._stream[sender] = sender.get_next_available_stream_id(is_unidirectional=True)
                sender.send_stream_data(stream_id, uni_stream_header(SESSION_ID))
            assert stream_id is not None
            sender.send_stream_data(stream_id, frame.data)
        if sender is self.server:
            self.server_ns += time.perf_counter_ns() - start

    def step(self) -> None:
        """Both sides handle due timers and exchange what they have to send; time moves one step."""
        now = self.now
        for connection in (self.server, self.client):
            deadline = connection.get_timer()
            if deadline is not None and deadline <= now:
                start = time.perf_counter_ns()
                connection.handle_timer(now=now)
                if connection is self.server:
                    self.server_ns += time.perf_counter_ns() - start
        pairs = ((self.client, self.server, CLIENT_ADDR), (self.server, self.client, SERVER_ADDR))
        for sender, receiver, addr in pairs:
            start = time.perf_counter_ns()
            datagrams = sender.datagrams_to_send(now=now)
            if sender is self.server and datagrams:
                self.server_ns += time.perf_counter_ns() - start
                self.server_sent += len(datagrams)
            for data, _ in datagrams:
                start = time.perf_counter_ns()
                receiver.receive_datagram(data, addr, now=now)
                if receiver is self.server:
                    self.server_ns += time.perf_counter_ns() - start
        self.now += STEP_S


def _run(link: _Link, sender: QuicConnection, seconds: float) -> tuple[float, float]:
    """Server ns and server-sent packets per simulated second while `sender` sends real-rate media."""
    start_us = round(link.now * 1e6)
    tracks: tuple[tuple[int, MediaKind], ...] = ((1, "audio"), (2, "video"))
    sources = [source_for(kind, "floor", track, start_us) for track, kind in tracks]
    end = link.now + seconds
    while link.now < end:
        now_us = round(link.now * 1e6)
        for source in sources:
            for frame in source.due(now_us):
                link.send(sender, frame)
        link.step()
    return link.server_ns / seconds, link.server_sent / seconds


def measure_relay(seconds: float = 10.0) -> RelayFloor:
    with tempfile.TemporaryDirectory() as tmp:
        cert = CertificateStore(Path(tmp), timedelta(days=1), timedelta(hours=1)).rotate(utcnow())
        egress = _Link(cert.cert_path, cert.key_path)
        egress_ns, egress_packets = _run(egress, egress.server, seconds)
        ingest = _Link(cert.cert_path, cert.key_path)
        ingest_ns, ingest_acks = _run(ingest, ingest.client, seconds)
    return RelayFloor(egress_ns, egress_packets, ingest_ns, ingest_acks)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    floor = measure_relay(parser.parse_args().seconds)
    print(
        f"egress: {floor.egress_ns_per_s / floor.egress_packets_per_s / 1000:.1f} us per packet "
        f"({floor.egress_packets_per_s:.0f} packets/s per subscriber); ingest: "
        f"{floor.ingest_ns_per_s / 1e6:.1f} ms/s for the publisher's media, {floor.ingest_acks_per_s:.0f} ACKs/s"
    )
    for subscribers in (1, 10, 50):
        print(
            f"relay floor, 1 publisher to {subscribers:>2}: {floor.us_per_packet(subscribers):.1f} us per packet"
        )


if __name__ == "__main__":
    main()
