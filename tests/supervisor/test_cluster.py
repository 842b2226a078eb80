"""`darktower serve` with several workers, as real processes: systemd notifications through a real datagram
socket, `status` from the heartbeat table, SIGHUP rolling restart, SIGTERM drain, a hung worker found by
heartbeat, and a killed supervisor that takes its children along."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from darktower.client.transport import SessionClosed, StreamData, WebTransportSession
from darktower.proto import signaling_pb2 as pb
from darktower.proto.signaling import encode_delimited
from darktower.supervisor.cli import main
from darktower.supervisor.status import NoServerError, read_status
from darktower.workers.cid import cid_worker

if TYPE_CHECKING:
    from conftest import ServeProcess

DEADLINE_S = 60.0
"""For anything that waits on fresh interpreters starting on a shared 2-core machine."""


class Systemd:
    """A datagram socket standing in for systemd's notification socket, at an abstract address.

    A thread reads it all the time, as systemd does: the kernel queues only a few datagrams
    (`net.unix.max_dgram_qlen`, 10 here) and the server's non-blocking sends drop the rest, so a slow
    start-up that queued ten WATCHDOG=1 would otherwise lose READY=1."""

    def __init__(self) -> None:
        self.name = f"darktower-test-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name)
        self.received: list[str] = []
        self._messages: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.socket.recv(4096):
                self._messages.put(data.decode())

    def close(self) -> None:
        self.socket.shutdown(socket.SHUT_RDWR)
        self._reader.join(5)
        self.socket.close()

    def expect(self, first_line: str, timeout: float = DEADLINE_S) -> list[str]:
        """The lines of the next datagram whose first line is `first_line` (others are kept in `received`)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=remaining)
            except queue.Empty:
                break
            self.received.append(message)
            lines = message.split("\n")
            if lines[0] == first_line:
                return lines
        raise AssertionError(f"no {first_line} within {timeout} s; got {self.received}")


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    stand_in = Systemd()
    yield stand_in
    stand_in.close()


def _until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Polls `condition` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return value


def _gone(pid: int) -> bool:
    """The process no longer runs (or is a zombie nobody has reaped yet)."""
    try:
        with Path(f"/proc/{pid}/stat").open() as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class HealthWatch:
    """Asks the control plane's /healthz in a loop on a thread and counts what did not answer ok."""

    def __init__(self, url: str) -> None:
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    response = client.get("/healthz")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    self.answered += 1
                    if response.status_code != 200:
                        self.failures.append(str(response.status_code))
                self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_workers_report_to_systemd_and_status_and_are_replaced_one_at_a_time_on_sighup(
    serve: Callable[..., ServeProcess], tmp_path: Path, systemd: Systemd
) -> None:
    data = tmp_path / "data"
    server = serve("--workers", "2", NOTIFY_SOCKET="@" + systemd.name, WATCHDOG_USEC="1000000")
    port = int(server.wait_log(r"^QUIC steering: reuseport-cbpf, 2 workers on UDP port (\d+)$").group(1))
    control_pid = int(server.wait_log(r"^control started \(pid (\d+)\)$").group(1))
    server.wait_ready()
    assert systemd.expect("READY=1")[1:] == [
        f"STATUS=2 workers; HTTP on port {server.http_url.split(':')[-1]}"
    ]
    systemd.expect("WATCHDOG=1")
    systemd.expect("WATCHDOG=1")

    before = read_status(str(data))["workers"]
    assert [w["state"] for w in before] == ["running", "running"]
    assert [w["restarts"] for w in before] == [0, 0]
    assert [w["port"] for w in before] == [port, port]
    assert server.quic_url.endswith(f":{port}")

    second = serve()
    assert second.process.wait(DEADLINE_S) == 1
    assert second.stderr.rest(timeout=5) == [
        f"darktower: another darktower serve is running with the data directory {data}"
    ]

    health = HealthWatch(server.http_url)
    os.kill(server.process.pid, signal.SIGHUP)
    assert systemd.expect("RELOADING=1")[1].startswith("MONOTONIC_USEC=")
    for worker in before:
        index, pid, port = worker["index"], worker["pid"], worker["port"]
        server.wait_log(rf"^replacing worker-{index} \(pid {pid}\)$")
        server.wait_log(rf"^worker-{index} replaced \(pid \d+\) on port {port}$")
    server.wait_log(r"^rolling restart finished$")
    systemd.expect("READY=1")
    health.stop()
    assert health.failures == []
    assert health.answered > 0

    after = read_status(str(data))["workers"]
    assert [w["state"] for w in after] == ["running", "running"]
    assert [w["restarts"] for w in after] == [1, 1]
    assert [w["port"] for w in after] == [w["port"] for w in before]
    assert all(_gone(w["pid"]) for w in before)

    assert server.stop(signal.SIGTERM) == 0
    systemd.expect("STOPPING=1")
    server.stderr.rest(timeout=5)
    logs = server.stderr.seen
    assert sum(f"control started (pid {control_pid})" in line for line in logs) == 1
    assert not [line for line in logs if "control exited" in line]
    assert sum('"msg": "draining: 0 sessions open"' in line for line in logs) == 2
    with pytest.raises(NoServerError, match="no heartbeat table"):
        read_status(str(data))


def test_a_stopped_worker_is_found_by_its_heartbeat_and_replaced_on_the_same_socket(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = serve("--workers", "2", DARKTOWER_SERVER__HEARTBEAT_TIMEOUT_S="1")
    server.wait_ready()
    healthy, hung = (worker["pid"] for worker in read_status(data)["workers"])
    os.kill(hung, signal.SIGSTOP)
    try:
        server.wait_log(rf"^worker-1 \(pid {hung}\) sent no heartbeat for \d+\.\d s; killing it$")

        def replaced() -> dict[str, Any] | None:
            worker: dict[str, Any] = read_status(data)["workers"][1]
            fresh = worker["heartbeat_age_s"] is not None and worker["heartbeat_age_s"] < 1
            return worker if worker["pid"] != hung and worker["state"] == "running" and fresh else None

        worker = _until(replaced, "replacement worker beating")
    finally:
        if not _gone(hung):
            os.kill(hung, signal.SIGCONT)
    assert worker["restarts"] == 1
    assert _gone(hung)
    assert server.quic_url.endswith(f":{worker['port']}")
    assert read_status(data)["workers"][0]["pid"] == healthy

    # The replacement serves worker 1's place in the reuseport group: connections whose CIDs name worker 1
    # complete their handshake and work (new connections land by hash; keep going until one lands there).
    with httpx.Client(base_url=server.http_url) as client:
        assert client.post("/v1/meetings", json={"meeting_id": "after"}).status_code == 201

        async def connect(joined: dict[str, Any]) -> int | None:
            hashes = [bytes.fromhex(h["value"]) for h in joined["certificate_hashes"]]
            session = await WebTransportSession.connect(joined["webtransport_url"], certificate_hashes=hashes)
            try:
                return cid_worker(session._quic._peer_cid.cid)
            finally:
                await session.close()

        def join() -> dict[str, Any]:
            response = client.post("/v1/meetings/after/join", json={"display_name": "Ada"})
            assert response.status_code == 200
            joined: dict[str, Any] = response.json()
            return joined

        landed = [asyncio.run(connect(join()))]
        while landed[-1] != 1:
            assert len(landed) < 40, f"40 connections, none on worker 1: {landed}"
            landed.append(asyncio.run(connect(join())))
    assert server.stop() == 0


def test_a_killed_supervisor_takes_its_children_along_and_a_new_one_takes_over(
    serve: Callable[..., ServeProcess], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    server = serve("--workers", "2")
    control_pid = int(server.wait_log(r"^control started \(pid (\d+)\)$").group(1))
    server.wait_ready()
    children = [control_pid, *(w["pid"] for w in read_status(data)["workers"])]
    assert not any(_gone(pid) for pid in children)

    server.process.kill()
    server.process.wait()
    _until(lambda: all(_gone(pid) for pid in children), "children gone")
    assert main(["status", "--data-dir", data]) == 1
    assert f"supervisor pid {server.process.pid}, which is gone" in capsys.readouterr().err

    successor = serve()
    successor.wait_log(r"^removed the heartbeat table /darktower-\w+ left by a server that was killed$")
    successor.wait_ready()
    assert read_status(data)["supervisor"]["pid"] == successor.process.pid
    assert successor.stop() == 0


async def test_sigterm_drains_open_sessions_and_a_sigint_cuts_the_drain_short(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    server = serve(DARKTOWER_SERVER__DRAIN_TIMEOUT_S="600")
    await asyncio.to_thread(server.wait_ready)
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.post("/v1/meetings", json={"meeting_id": "m"})).status_code == 201
        joined = (await client.post("/v1/meetings/m/join", json={"display_name": "Ada"})).json()
    hashes = [bytes.fromhex(h["value"]) for h in joined["certificate_hashes"]]
    session = await WebTransportSession.connect(joined["webtransport_url"], certificate_hashes=hashes)
    try:
        signaling = session.create_bidirectional_stream()
        join = pb.ClientMessage(request_id=1, join=pb.Join(token=joined["token"]))
        session.send_stream_data(signaling, encode_delimited(join))
        async with asyncio.timeout(10):
            reply = await session.next_event()
        assert isinstance(reply, StreamData)

        os.kill(server.process.pid, signal.SIGTERM)

        def draining() -> bool:
            worker = read_status(data)["workers"][0]
            return bool(worker["state"] == "draining" and worker["connections"] == 1)

        await asyncio.to_thread(_until, draining, "worker draining with its session open")
        os.kill(server.process.pid, signal.SIGINT)
        async with asyncio.timeout(DEADLINE_S):
            while not isinstance(await session.next_event(), SessionClosed):
                pass
    finally:
        await session.close()
    assert await asyncio.to_thread(server.process.wait, DEADLINE_S) == 0
    await asyncio.to_thread(server.wait_log, r"^SIGINT while draining: stopping at once$")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "257"], "server.workers: 257 is outside 0..256 (0: one per usable core)"),
        (["--workers", "-1"], "server.workers: -1 is outside 0..256 (0: one per usable core)"),
        (
            ["--workers", "3", "--quic-port", "65534"],
            (
                "server.workers: 3 workers need UDP ports 65534..65536 (quic_port + worker index), which do "
                "not all exist"
            ),
        ),
    ],
)
def test_a_worker_count_that_cannot_work_is_a_config_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    for name in os.environ:
        if name.startswith("DARKTOWER_"):
            monkeypatch.delenv(name)
    assert main(["serve", "--data-dir", str(tmp_path / "data"), *args]) == 2
    assert capsys.readouterr().err == f"darktower: config error: {message}\n"
    assert not (tmp_path / "data").exists()
