"""A real WorkerServer with real WebTransport clients and real join tokens over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from darktower.client.transport import (
    DatagramReceived,
    SessionClosed,
    WebTransportSession,
)
from darktower.core.certs import CertificateError, CertificateStore, ServingCertificate, utcnow
from darktower.core.config import Config, LimitsConfig, ServerConfig, TlsConfig
from darktower.core.tokens import TokenSigner, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import FrameReader, encode_frame
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.server import WorkerServer

TIMEOUT = 5.0
MEETING = "standup"


@dataclass
class Participant:
    """One client session, its signaling stream, and everything it received so far."""

    session: WebTransportSession
    signaling: int
    messages: list[pb.ServerMessage] = field(default_factory=list)
    datagrams: list[bytes] = field(default_factory=list)
    streams: dict[int, bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    closed: SessionClosed | None = None
    reader: DelimitedReader = field(default_factory=lambda: DelimitedReader(1 << 20))
    next_request: int = 1

    def send(self, message: pb.ClientMessage) -> None:
        self.session.send_stream_data(self.signaling, encode_delimited(message))

    async def pump_until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not done():
                event = await self.session.next_event()
                if isinstance(event, SessionClosed):
                    self.closed = event
                    if not done():
                        raise AssertionError(f"session closed while waiting: {event}")
                    return
                if isinstance(event, DatagramReceived):
                    self.datagrams.append(event.data)
                elif event.stream_id == self.signaling:
                    self.messages.extend(parse_server_message(b) for b in self.reader.feed(event.data))
                else:
                    self.streams[event.stream_id] = self.streams.get(event.stream_id, b"") + event.data
                    if event.end_stream:
                        self.ended.add(event.stream_id)

    async def request(self, **body: Any) -> pb.ServerMessage:
        request_id = self.next_request
        self.next_request += 1
        self.send(pb.ClientMessage(request_id=request_id, **body))
        await self.pump_until(lambda: any(m.request_id == request_id for m in self.messages))
        return next(m for m in self.messages if m.request_id == request_id)

    async def wait_closed(self) -> SessionClosed:
        await self.pump_until(lambda: self.closed is not None)
        assert self.closed is not None
        return self.closed

    def errors(self) -> list[pb.Error]:
        return [m.error for m in self.messages if m.WhichOneof("body") == "error"]


@dataclass
class Worker:
    server: WorkerServer
    certificate: ServingCertificate
    signer: TokenSigner
    participants: list[Participant] = field(default_factory=list)

    def token(self, name: str, *, meeting: str = MEETING, now: float | None = None) -> str:
        token, _ = self.signer.sign(
            meeting_id=meeting,
            participant_id=name,
            display_name=name.title(),
            can_publish=True,
            can_subscribe=True,
            now=time.time() if now is None else now,
        )
        return token

    async def connect(self, meeting: str = MEETING) -> Participant:
        session = await WebTransportSession.connect(
            f"https://127.0.0.1:{self.server.port}/meetings/{meeting}",
            certificate_hashes=[self.certificate.sha256],
            timeout=TIMEOUT,
        )
        participant = Participant(session, session.create_bidirectional_stream())
        self.participants.append(participant)
        return participant

    async def join(self, name: str) -> tuple[Participant, pb.JoinResponse]:
        participant = await self.connect()
        reply = await participant.request(join=pb.Join(token=self.token(name)))
        assert reply.WhichOneof("body") == "join_response", reply
        return participant, reply.join_response


def worker_config(tmp_path: Path) -> Config:
    return Config(server=ServerConfig(host="127.0.0.1", quic_port=0, data_dir=str(tmp_path)))


@pytest.fixture
async def worker(
    tmp_path: Path, serving_certificate: ServingCertificate, token_keys: tuple[TokenSigner, TokenVerifier]
) -> AsyncIterator[Worker]:
    signer, verifier = token_keys
    server = await WorkerServer.start(
        worker_config(tmp_path), verifier=verifier, certificate_dir=serving_certificate.cert_path.parent
    )
    worker = Worker(server, serving_certificate, signer)
    yield worker
    for participant in worker.participants:
        await participant.session.close()
    await server.close()


async def publish(participant: Participant, kind: pb.TrackKind, codec: str) -> int:
    reply = await participant.request(publish=pb.PublishTrack(kind=kind, codec=codec, label=codec))
    assert reply.WhichOneof("body") == "publish_response", reply
    return reply.publish_response.track.track_id


async def subscribe(participant: Participant, track_id: int) -> None:
    reply = await participant.request(subscribe=pb.Subscribe(track_id=track_id))
    assert reply.WhichOneof("body") == "ack", reply


def streams_ended(participant: Participant, count: int) -> Callable[[], bool]:
    return lambda: len(participant.ended) == count


def video_group(track_id: int, group: int, frames: int) -> list[bytes]:
    return [
        encode_frame(
            track_id=track_id,
            group=group,
            object_seq=seq,
            capture_us=1_000_000 + seq,
            payload=bytes([group, seq]) * (3000 if seq == 0 else 400),
            keyframe=seq == 0,
        )
        for seq in range(frames)
    ]


async def test_audio_and_video_from_a_publisher_reach_a_subscriber_byte_for_byte(worker: Worker) -> None:
    alice, _ = await worker.join("alice")
    bob, joined = await worker.join("bob")
    assert [p.participant_id for p in joined.roster] == ["alice"]
    audio = await publish(alice, pb.TRACK_KIND_AUDIO, "opus")
    video = await publish(alice, pb.TRACK_KIND_VIDEO, "vp8")
    await subscribe(bob, audio)
    await subscribe(bob, video)

    frames = [
        encode_frame(track_id=audio, group=0, object_seq=i, capture_us=10 + i, payload=bytes([i]) * 90)
        for i in range(5)
    ]
    for frame in frames:
        alice.session.send_datagram(frame)
    await bob.pump_until(lambda: len(bob.datagrams) == len(frames))
    assert sorted(bob.datagrams) == sorted(frames)

    group = video_group(video, 1, 6)
    stream = alice.session.create_unidirectional_stream()
    for frame in group:
        alice.session.send_stream_data(stream, frame)
    alice.session.send_stream_data(stream, b"", end_stream=True)
    await bob.pump_until(lambda: len(bob.ended) == 1)
    (received,) = bob.streams.values()
    assert received == b"".join(group)
    assert [h.object_seq for h, _ in FrameReader().feed(received)] == list(range(6))


async def test_each_group_travels_on_its_own_stream(worker: Worker) -> None:
    alice, _ = await worker.join("alice")
    bob, _ = await worker.join("bob")
    video = await publish(alice, pb.TRACK_KIND_VIDEO, "vp8")
    await subscribe(bob, video)
    groups = [video_group(video, g, 3) for g in (1, 2, 3)]
    for count, group in enumerate(groups, 1):
        stream = alice.session.create_unidirectional_stream()
        alice.session.send_stream_data(stream, b"".join(group), end_stream=True)
        await bob.pump_until(streams_ended(bob, count))
    assert [bob.streams[s] for s in sorted(bob.ended)] == [b"".join(g) for g in groups]


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda w: "not-a-token", pb.ERROR_CODE_TOKEN_INVALID),
        (lambda w: w.token("eve", now=time.time() - 3600), pb.ERROR_CODE_TOKEN_EXPIRED),
        (lambda w: w.token("eve", meeting="elsewhere"), pb.ERROR_CODE_WRONG_MEETING),
    ],
)
async def test_a_refused_token_closes_only_that_session_with_its_code(
    worker: Worker, make_token: Callable[[Worker], str], code: int
) -> None:
    alice, _ = await worker.join("alice")
    eve = await worker.connect()
    eve.send(pb.ClientMessage(request_id=1, join=pb.Join(token=make_token(worker))))
    closed = await eve.wait_closed()
    assert closed.code == code
    assert [(e.code, e.fatal) for e in eve.errors()] == [(code, True)]
    reply = await alice.request(ping=pb.Ping(client_time_us=7))
    assert reply.pong.client_time_us == 7
    carol, _ = await worker.join("carol")
    assert carol.closed is None


async def test_malformed_signaling_closes_only_that_session(worker: Worker) -> None:
    alice, _ = await worker.join("alice")
    mallory, _ = await worker.join("mallory")
    mallory.session.send_stream_data(mallory.signaling, b"\xff\xff\xff\xff\xff\xff")
    closed = await mallory.wait_closed()
    assert closed.code == pb.ERROR_CODE_MALFORMED
    await alice.pump_until(lambda: any(m.WhichOneof("body") == "participant_left" for m in alice.messages))
    reply = await alice.request(ping=pb.Ping(client_time_us=1))
    assert reply.WhichOneof("body") == "pong"


async def test_a_client_that_leaves_is_announced_to_the_others(worker: Worker) -> None:
    alice, _ = await worker.join("alice")
    bob, _ = await worker.join("bob")
    await bob.session.close(0, "bye")
    await alice.pump_until(
        lambda: any(
            m.WhichOneof("body") == "participant_left" and m.participant_left.participant_id == "bob"
            for m in alice.messages
        )
    )
    dump = worker.server.dump()
    assert dump["sessions"] == 1
    assert dump["connections"] >= 1


async def test_closing_the_server_closes_its_sessions(worker: Worker) -> None:
    alice, _ = await worker.join("alice")
    await worker.server.close()
    closed = await alice.wait_closed()
    assert closed.reason == "server shutting down"


async def test_a_subscriber_that_stops_reading_is_dropped_from_the_group_and_others_keep_up(
    tmp_path: Path,
    serving_certificate: ServingCertificate,
    token_keys: tuple[TokenSigner, TokenVerifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="darktower.workers.server")
    signer, verifier = token_keys
    config = worker_config(tmp_path)
    config = Config(server=config.server, limits=LimitsConfig(max_queued_ms=1))
    server = await WorkerServer.start(
        config, verifier=verifier, certificate_dir=serving_certificate.cert_path.parent
    )
    worker = Worker(server, serving_certificate, signer)
    try:
        alice, _ = await worker.join("alice")
        bob, _ = await worker.join("bob")
        carol, _ = await worker.join("carol")
        video = await publish(alice, pb.TRACK_KIND_VIDEO, "vp8")
        await subscribe(bob, video)
        await subscribe(carol, video)
        cast("asyncio.ReadTransport", bob.session._transport).pause_reading()
        sent: list[bytes] = []
        while not any(r.getMessage().startswith("subscriber lagging") for r in caplog.records):
            assert len(sent) < 40, "40 groups (1.2 MB) never left the paused subscriber behind"
            group = b"".join(video_group(video, len(sent) + 1, 30))
            stream = alice.session.create_unidirectional_stream()
            alice.session.send_stream_data(stream, group, end_stream=True)
            sent.append(group)
            await carol.pump_until(streams_ended(carol, len(sent)))
        assert [carol.streams[s] for s in sorted(carol.ended)] == sent
    finally:
        for participant in worker.participants:
            await participant.session.close()
        await server.close()


async def test_a_rotated_certificate_is_served_to_new_connections(
    tmp_path: Path, token_keys: tuple[TokenSigner, TokenVerifier]
) -> None:
    certificate_dir = tmp_path / "tls"
    first = CertificateStore(certificate_dir, timedelta(days=10), timedelta(days=3)).rotate(utcnow())
    server = await WorkerServer.start(
        worker_config(tmp_path), verifier=token_keys[1], certificate_dir=certificate_dir
    )
    try:
        assert not server.reload_certificate()
        due = CertificateStore(certificate_dir, timedelta(days=13), timedelta(days=12, hours=23))
        second = due.rotate(utcnow() + timedelta(seconds=2))
        assert second.sha256 != first.sha256
        assert server.reload_certificate()
        assert server.dump()["certificate_sha256"] == second.sha256.hex()
        session = await WebTransportSession.connect(
            f"https://127.0.0.1:{server.port}/meetings/{MEETING}",
            certificate_hashes=[second.sha256],
            timeout=TIMEOUT,
        )
        await session.close()
    finally:
        await server.close()


async def test_a_configured_certificate_is_served(
    tmp_path: Path, serving_certificate: ServingCertificate, token_keys: tuple[TokenSigner, TokenVerifier]
) -> None:
    tls = TlsConfig(
        certificate=str(serving_certificate.cert_path), private_key=str(serving_certificate.key_path)
    )
    config = Config(server=worker_config(tmp_path).server, tls=tls)
    server = await WorkerServer.start(config, verifier=token_keys[1])
    try:
        session = await WebTransportSession.connect(
            f"https://127.0.0.1:{server.port}/meetings/{MEETING}",
            certificate_hashes=[serving_certificate.sha256],
            timeout=TIMEOUT,
        )
        await session.close()
    finally:
        await server.close()


async def test_without_any_certificate_the_server_does_not_start(
    tmp_path: Path, token_keys: tuple[TokenSigner, TokenVerifier]
) -> None:
    with pytest.raises(CertificateError):
        await WorkerServer.start(worker_config(tmp_path), verifier=token_keys[1])
