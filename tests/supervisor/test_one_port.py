"""One public port, end to end: `darktower serve` with several workers, real WebTransport sessions.

With the reuseport CBPF program every worker serves the same UDP port and the kernel steers each datagram
by its destination connection ID; the heartbeat table (`darktower status`) says which worker holds how many
connections, so the test can check that a connection is held by exactly the worker its CIDs name, for its
whole life (also after the client switches to another of them). With one port per worker, the control
plane must send each participant to the port of its meeting's owner.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from darktower.client.transport import StreamData, WebTransportSession
from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import DelimitedReader, encode_delimited, parse_server_message
from darktower.supervisor.serve import WORKERS_PER_CORE
from darktower.supervisor.status import read_status
from darktower.workers.cid import cid_worker
from darktower.workers.shard import owner_index

if TYPE_CHECKING:
    from conftest import ServeProcess

DEADLINE_S = 60.0
"""For anything that waits on fresh interpreters starting on a shared 2-core machine."""
WORKERS = 3
PINGS = 20
DARKTOWER = str(Path(sys.executable).with_name("darktower"))


class Participant:
    """One joined WebTransport session with its signaling stream; `request` waits for the matching reply."""

    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        self._stream = session.create_bidirectional_stream()
        self._reader = DelimitedReader(1 << 20)
        self._next_id = 1

    @classmethod
    async def join(cls, client: httpx.AsyncClient, meeting_id: str) -> tuple[Participant, dict[str, Any]]:
        response = await client.post(f"/v1/meetings/{meeting_id}/join", json={"display_name": meeting_id})
        assert response.status_code == 200, response.text
        joined: dict[str, Any] = response.json()
        hashes = [bytes.fromhex(h["value"]) for h in joined["certificate_hashes"]]
        session = await WebTransportSession.connect(joined["webtransport_url"], certificate_hashes=hashes)
        participant = cls(session)
        reply = await participant.request(pb.ClientMessage(join=pb.Join(token=joined["token"])))
        assert reply.WhichOneof("body") == "join_response", reply
        return participant, joined

    @property
    def worker(self) -> int | None:
        """The worker the CID this client sends to names."""
        return cid_worker(self.session._quic._peer_cid.cid)

    def switch_connection_id(self) -> None:
        """Moves to the next CID the server issued (RFC 9000 5.1.2), as a client behind a NAT rebind would."""
        before = self.session._quic._peer_cid.cid
        self.session._quic.change_connection_id()
        assert self.session._quic._peer_cid.cid != before

    async def request(self, message: pb.ClientMessage) -> pb.ServerMessage:
        message.request_id = request_id = self._next_id
        self._next_id += 1
        self.session.send_stream_data(self._stream, encode_delimited(message))
        async with asyncio.timeout(10):
            while True:
                event = await self.session.next_event()
                if not isinstance(event, StreamData) or event.stream_id != self._stream:
                    continue
                for body in self._reader.feed(event.data):
                    reply = parse_server_message(body)
                    if reply.request_id == request_id:
                        return reply

    async def ping(self, times: int) -> None:
        for n in range(times):
            reply = await self.request(pb.ClientMessage(ping=pb.Ping(client_time_us=n)))
            assert reply.pong.client_time_us == n


def _connections(data: str) -> list[int]:
    return [worker["connections"] for worker in read_status(data)["workers"]]


def _until_connections(data: str, expected: list[int]) -> None:
    """Waits until the workers' heartbeats (every 0.25 s) report these connection counts."""
    deadline = time.monotonic() + DEADLINE_S
    while (seen := _connections(data)) != expected:
        assert time.monotonic() < deadline, f"connections {seen}, not {expected}"
        time.sleep(0.05)


async def test_each_connection_stays_on_the_worker_its_connection_ids_name(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = serve("--workers", str(WORKERS), DARKTOWER_SERVER__STEERING="reuseport-cbpf")
    port = int(
        (
            await asyncio.to_thread(
                server.wait_log, rf"^QUIC steering: reuseport-cbpf, {WORKERS} workers on UDP port (\d+)$"
            )
        ).group(1)
    )
    await asyncio.to_thread(server.wait_ready)
    assert server.quic_url.endswith(f":{port}")
    assert {worker["port"] for worker in read_status(data)["workers"]} == {port}

    participants: list[Participant] = []
    held: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        try:
            # A client's first Initial lands by a hash of its random DCID; keep connecting until every worker
            # holds some (each new connection is 1/3 likely to hit a given worker, so this ends soon).
            while len(held) < WORKERS:
                assert len(participants) < 40, f"connections landed only on workers {sorted(held)}"
                meeting_id = f"m{len(participants)}"
                assert (await client.post("/v1/meetings", json={"meeting_id": meeting_id})).status_code == 201
                participant, joined = await Participant.join(client, meeting_id)
                assert joined["webtransport_url"].startswith(f"{server.quic_url}/")
                participants.append(participant)
                worker = participant.worker
                assert worker is not None
                held[worker] += 1
                expected = [held[index] for index in range(WORKERS)]
                await asyncio.to_thread(_until_connections, data, expected)

            # For their whole life the connections' datagrams reach the worker that holds them: signaling
            # round trips before and after each client moves to another of its CIDs.
            await asyncio.gather(*(participant.ping(PINGS) for participant in participants))
            for participant in participants:
                worker = participant.worker
                participant.switch_connection_id()
                assert participant.worker == worker
            await asyncio.gather(*(participant.ping(PINGS) for participant in participants))
            assert _connections(data) == [held[index] for index in range(WORKERS)]
        finally:
            await asyncio.gather(*(participant.session.close() for participant in participants))
    await asyncio.to_thread(_until_connections, data, [0] * WORKERS)
    assert await asyncio.to_thread(server.stop) == 0


async def test_with_one_port_per_worker_a_join_names_the_port_of_the_meetings_owner(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = serve("--workers", str(WORKERS), DARKTOWER_SERVER__STEERING="port-per-worker")
    listed = (
        await asyncio.to_thread(
            server.wait_log, r"^QUIC steering: port-per-worker, workers on UDP ports (\d+), (\d+), (\d+)$"
        )
    ).groups()
    ports = [int(port) for port in listed]
    await asyncio.to_thread(server.wait_ready)
    assert len(set(ports)) == WORKERS
    assert [worker["port"] for worker in read_status(data)["workers"]] == ports

    participants: list[Participant] = []
    owners: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        try:
            meeting = 0
            while len(owners) < WORKERS:
                meeting_id = f"owned-{meeting}"
                meeting += 1
                owner = owner_index(meeting_id, WORKERS)
                assert (await client.post("/v1/meetings", json={"meeting_id": meeting_id})).status_code == 201
                participant, joined = await Participant.join(client, meeting_id)
                participants.append(participant)
                assert joined["webtransport_url"].split("/meetings/")[0].endswith(f":{ports[owner]}")
                owners[owner] += 1
                expected = [owners[index] for index in range(WORKERS)]
                await asyncio.to_thread(_until_connections, data, expected)
            await asyncio.gather(*(participant.ping(PINGS) for participant in participants))
        finally:
            await asyncio.gather(*(participant.session.close() for participant in participants))
    assert await asyncio.to_thread(server.stop) == 0


def test_a_quic_port_in_use_fails_start_up_naming_the_key(
    darktower: Callable[..., Any], tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = darktower(
            "serve", "--data-dir", str(tmp_path / "data"), "--http-port", "0", "--quic-port", str(port),
            "--workers", "2",
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"darktower: server.quic_port: UDP port {port} on 127.0.0.1 is in use"
    )


def test_more_workers_than_the_machine_allows_fail_start_up_naming_the_key(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    workers = WORKERS_PER_CORE + 1
    result = subprocess.run(
        ["taskset", "-c", str(cpu), DARKTOWER, "serve", "--data-dir", str(tmp_path / "data"), "--workers",
         str(workers)],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("DARKTOWER_")}, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"darktower: server.workers: {workers} workers asked for; this machine allows at most "
        f"{WORKERS_PER_CORE} ({WORKERS_PER_CORE} per usable core, 1 usable)\n"
    )
    assert not (tmp_path / "data").exists()


def test_workers_0_starts_one_worker_per_usable_core(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    allowed = os.sched_getaffinity(0)
    cores = set(sorted(allowed)[:2])
    os.sched_setaffinity(0, cores)  # the server inherits it
    try:
        server = serve("--workers", "0")
    finally:
        os.sched_setaffinity(0, allowed)
    server.wait_ready()
    assert [worker["index"] for worker in read_status(str(tmp_path / "data"))["workers"]] == list(
        range(len(cores))
    )
    assert server.stop() == 0
