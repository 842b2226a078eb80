"""The worker process entry: it reports its port, serves sessions, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

from darktower.client.transport import StreamData, WebTransportSession
from darktower.core.certs import store_for, utcnow
from darktower.core.config import Config, ServerConfig
from darktower.core.tokens import TokenSigner, load_or_create_signing_key
from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.main import worker_process

START_TIMEOUT_S = 30.0


async def test_a_worker_process_serves_joins_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = Config(server=ServerConfig(host="127.0.0.1", quic_port=0, data_dir=str(tmp_path)))
    key = load_or_create_signing_key(tmp_path / "signing-key.pem")
    tls = config.tls
    cert = store_for(str(tmp_path), tls.self_signed_validity_hours, tls.rotate_before_expiry_hours).rotate(
        utcnow()
    )
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=worker_process, args=(config.to_dict(), 0, None, child))
    process.start()
    try:
        assert await asyncio.to_thread(parent.poll, START_TIMEOUT_S)
        ready = parent.recv()
        assert set(ready) == {"quic_port"}
        session = await WebTransportSession.connect(
            f"https://127.0.0.1:{ready['quic_port']}/meetings/m1", certificate_hashes=[cert.sha256]
        )
        token, _ = TokenSigner(key, config.auth.issuer, 60).sign(
            meeting_id="m1",
            participant_id="p1",
            display_name="P",
            can_publish=True,
            can_subscribe=True,
            now=time.time(),
        )
        signaling = session.create_bidirectional_stream()
        session.send_stream_data(
            signaling, encode_delimited(pb.ClientMessage(request_id=1, join=pb.Join(token=token)))
        )
        reader = DelimitedReader(1 << 20)
        bodies: list[bytes] = []
        async with asyncio.timeout(10):
            while not bodies:
                event = await session.next_event()
                assert isinstance(event, StreamData), event
                bodies = reader.feed(event.data)
        assert parse_server_message(bodies[0]).join_response.participant_id == "p1"
        await session.close()
        process.terminate()
        await asyncio.to_thread(process.join, START_TIMEOUT_S)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join()


async def test_a_worker_without_a_signing_key_reports_an_error(tmp_path: Path) -> None:
    config = Config(server=ServerConfig(host="127.0.0.1", quic_port=0, data_dir=str(tmp_path)))
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=worker_process, args=(config.to_dict(), 0, None, child))
    process.start()
    try:
        assert await asyncio.to_thread(parent.poll, START_TIMEOUT_S)
        assert "signing key" in parent.recv()["error"]
        await asyncio.to_thread(process.join, START_TIMEOUT_S)
        assert process.exitcode == 1
    finally:
        if process.is_alive():
            process.kill()
            process.join()
