"""A worker process on its own (no supervisor): it beats into the heartbeat table with its load, and SIGTERM
drains: it keeps serving open sessions and exits once they are gone or the drain deadline passed."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from pathlib import Path

import pytest

from darktower.client.transport import SessionClosed, StreamData, WebTransportSession
from darktower.core.certs import store_for, utcnow
from darktower.core.config import Config, ServerConfig
from darktower.core.tokens import TokenSigner, load_or_create_signing_key
from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.workers.heartbeat import HeartbeatTable, WorkerRecord, WorkerState, segment_name
from darktower.workers.main import worker_process

START_TIMEOUT_S = 30.0
StartWorker = Callable[[float], Awaitable["Worker"]]


@dataclass
class Worker:
    process: SpawnProcess
    table: HeartbeatTable
    url: str
    certificate_hash: bytes
    signer: TokenSigner

    def record(self) -> WorkerRecord:
        return self.table.snapshot().workers[0]

    async def until(self, predicate: Callable[[WorkerRecord], bool], what: str) -> WorkerRecord:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not predicate(record := self.record()):
            assert time.monotonic() < deadline, f"no {what} within {START_TIMEOUT_S} s: {record}"
            await asyncio.sleep(0.05)
        return record

    async def exit_code(self) -> int | None:
        await asyncio.to_thread(self.process.join, START_TIMEOUT_S)
        return self.process.exitcode


@pytest.fixture
async def start_worker(tmp_path: Path) -> AsyncIterator[StartWorker]:
    started: list[Worker] = []
    name = segment_name(tmp_path)

    async def start(drain_timeout_s: float) -> Worker:
        config = Config(
            server=ServerConfig(
                host="127.0.0.1", quic_port=0, data_dir=str(tmp_path), drain_timeout_s=drain_timeout_s
            )
        )
        key = load_or_create_signing_key(tmp_path / "signing-key.pem")
        tls = config.tls
        cert = store_for(
            str(tmp_path), tls.self_signed_validity_hours, tls.rotate_before_expiry_hours
        ).rotate(utcnow())
        table = HeartbeatTable.create(name, 1, supervisor_pid=os.getpid(), now_ns=0, heartbeat_timeout_ns=1)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=worker_process, args=(config.to_dict(), 0, None, child))
        process.start()
        table.worker_spawned(0, process.pid or 0, time.monotonic_ns(), 0)
        worker = Worker(process, table, "", cert.sha256, TokenSigner(key, config.auth.issuer, 60))
        started.append(worker)
        assert await asyncio.to_thread(parent.poll, START_TIMEOUT_S)
        worker.url = f"https://127.0.0.1:{parent.recv()['quic_port']}/meetings/m1"
        return worker

    yield start
    for worker in started:
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.table.close()
    HeartbeatTable.unlink(name)


class Participant:
    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        self.signaling = session.create_bidirectional_stream()
        self._reader = DelimitedReader(1 << 20)
        self._pending: list[pb.ServerMessage] = []

    @classmethod
    async def join(cls, worker: Worker) -> Participant:
        session = await WebTransportSession.connect(worker.url, certificate_hashes=[worker.certificate_hash])
        participant = cls(session)
        token, _ = worker.signer.sign(
            meeting_id="m1",
            participant_id="p1",
            display_name="P",
            can_publish=True,
            can_subscribe=True,
            now=time.time(),
        )
        participant.send(pb.ClientMessage(request_id=1, join=pb.Join(token=token)))
        assert (await participant.reply()).HasField("join_response")
        return participant

    def send(self, message: pb.ClientMessage) -> None:
        self.session.send_stream_data(self.signaling, encode_delimited(message))

    async def reply(self) -> pb.ServerMessage:
        async with asyncio.timeout(10):
            while not self._pending:
                event = await self.session.next_event()
                assert isinstance(event, StreamData), event
                self._pending.extend(parse_server_message(body) for body in self._reader.feed(event.data))
        return self._pending.pop(0)


async def test_a_draining_worker_serves_its_sessions_and_exits_when_they_are_gone(
    start_worker: StartWorker,
) -> None:
    worker = await start_worker(60.0)
    participant = await Participant.join(worker)
    loaded = await worker.until(lambda r: r.connections == 1 and r.meetings == 1, "load in the heartbeat")
    assert loaded.pid == worker.process.pid
    assert loaded.beat_ns > 0

    os.kill(worker.process.pid or 0, signal.SIGTERM)
    await worker.until(lambda r: r.state is WorkerState.DRAINING, "draining state")
    participant.send(pb.ClientMessage(request_id=2, ping=pb.Ping(client_time_us=7)))
    pong = await participant.reply()
    assert (pong.request_id, pong.pong.client_time_us) == (2, 7)

    await participant.session.close()
    assert await worker.exit_code() == 0


async def test_a_drain_ends_at_its_deadline_closing_what_is_still_open(
    start_worker: StartWorker,
) -> None:
    worker = await start_worker(1.0)
    participant = await Participant.join(worker)
    signalled = time.monotonic()
    os.kill(worker.process.pid or 0, signal.SIGTERM)
    async with asyncio.timeout(START_TIMEOUT_S):
        while not isinstance(event := await participant.session.next_event(), SessionClosed):
            pass
    assert time.monotonic() - signalled >= 1.0
    assert event.reason
    await participant.session.close()
    assert await worker.exit_code() == 0


async def test_sigint_closes_sessions_at_once_even_while_draining(
    start_worker: StartWorker,
) -> None:
    worker = await start_worker(600.0)
    participant = await Participant.join(worker)
    os.kill(worker.process.pid or 0, signal.SIGTERM)
    await worker.until(lambda r: r.state is WorkerState.DRAINING, "draining state")
    os.kill(worker.process.pid or 0, signal.SIGINT)
    async with asyncio.timeout(START_TIMEOUT_S):
        while not isinstance(await participant.session.next_event(), SessionClosed):
            pass
    await participant.session.close()
    assert await worker.exit_code() == 0
