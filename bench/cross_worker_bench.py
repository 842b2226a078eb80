"""What it costs a frame to cross workers: server CPU per delivered frame, subscribers local vs on another worker.

1. **End to end.** `darktower serve --workers 2` (one port per worker, so the bench places clients): one
   publisher on worker 0 sends real-rate synthetic media (50 audio datagrams/s, 30 video frames/s) to
   `--subscribers` subscribers, all on worker 0 ("local": plain fan-out) or all on worker 1 ("cross": worker 0
   writes each frame once into its media ring, worker 1 reads it and sends it). Each worker's CPU time
   (`/proc/<pid>/task/*/schedstat`) over `--seconds` is divided by the frames the subscribers received.
2. **The reader's share, isolated.** In this process, a real ring and a real `ClusterCore`: `--records`
   1,200-byte video frames written by a writer, then read back by a reader whose core routes each to one local
   subscriber (cursor `next` + `media_record`, producing the send action, not carrying it out). That is what
   crossing adds on the reading side; the send itself costs the same as for a local subscriber. It is compared
   with what sending one frame to one subscriber costs (the local run's worker CPU per frame per subscriber).
3. **Waking an idle reader.** A reader that has nothing to do sleeps on its FIFO; at 80 records/s each record
   wakes it alone. Its CPU per record, in a separate process, next to the same process woken by a UDP
   datagram per record (what a publisher's packet costs its own worker anyway).

    python bench/cross_worker_bench.py [--seconds 10] [--subscribers 10] [--records 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvloop
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.client.api import ControlApi, JoinInfo
from darktower.client.meeting import MeetingClient
from darktower.core.config import LimitsConfig
from darktower.core.tokens import TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import encode_frame
from darktower.supervisor.status import read_status
from darktower.workers.cluster_core import ClusterCore
from darktower.workers.cluster_io import open_fifo, unlink_rings
from darktower.workers.cluster_records import (
    MEDIA_HEADER,
    MEDIA_STARTS_GROUP,
    Catalog,
    MemberEntry,
    TrackEntry,
    cluster_session,
)
from darktower.workers.ring import Gap, Record, RecordKind, Ring, RingCursor, RingWriter
from darktower.workers.wakeup import RingReader, Wakeup

_HTTP_URL = re.compile(r"HTTP API on (http://\S+)")
_READY = "darktower: ready"


class _PinnedApi(ControlApi):
    """Every session of this API's clients goes to one worker's own port."""

    def __init__(self, base_url: str, port: int) -> None:
        super().__init__(base_url)
        self.port = port

    async def join(
        self, meeting_id: str, display_name: str, *, publish: bool = True, subscribe: bool = True
    ) -> JoinInfo:
        info = await super().join(meeting_id, display_name, publish=publish, subscribe=subscribe)
        url = urlsplit(info.webtransport_url)
        pinned = urlunsplit(url._replace(netloc=f"{url.hostname}:{self.port}"))
        return JoinInfo(
            info.token, info.participant_id, info.meeting_id, pinned, info.certificate_hashes, info.expires_at
        )


@dataclass
class _Server:
    http_url: str
    data_dir: str

    def worker_pids(self) -> list[int]:
        return [row["pid"] for row in read_status(self.data_dir)["workers"]]

    def worker_ports(self) -> list[int]:
        return [row["port"] for row in read_status(self.data_dir)["workers"]]


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


@contextlib.contextmanager
def _serve(workers: int) -> Iterator[_Server]:
    data_dir = tempfile.mkdtemp(prefix="darktower-bench-")
    executable = Path(sys.executable).with_name("darktower")
    log = Path(data_dir, "serve.log").open("w")  # noqa: SIM115 - closed with the server
    process = subprocess.Popen(
        [str(executable), "serve", "--http-port", "0", "--quic-port", "0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={
            **os.environ,
            "DARKTOWER_SERVER__WORKERS": str(workers),
            "DARKTOWER_SERVER__STEERING": "port-per-worker",
            "DARKTOWER_RATE_LIMITS__JOIN_BURST": "1000000",
            "DARKTOWER_RATE_LIMITS__JOIN_PER_MINUTE": "1000000",
        },
    )
    try:
        assert process.stdout is not None
        http_url = ""
        for line in process.stdout:
            match = _HTTP_URL.search(line)
            if match:
                http_url = match.group(1)
            if _READY in line:
                break
        else:
            log.flush()
            tail = Path(data_dir, "serve.log").read_text()[-2000:]
            raise RuntimeError(f"darktower serve exited with {process.wait()} before it was ready:\n{tail}")
        yield _Server(http_url, data_dir)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
        log.close()
        unlink_rings(data_dir, workers)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class Run:
    where: str
    subscribers: int
    seconds: float
    worker_cpu_s: tuple[float, ...]
    frames: int
    lost: int
    corrupt: int

    @property
    def us_per_frame(self) -> float:
        """Both workers' CPU per frame delivered to a subscriber."""
        return sum(self.worker_cpu_s) * 1e6 / self.frames

    def us_per_frame_on(self, worker: int) -> float:
        return self.worker_cpu_s[worker] * 1e6 / self.frames


def _received(client: MeetingClient) -> int:
    return sum(stats.received for stats in client.stats.tracks.values())


def _has_video(client: MeetingClient, publisher: str) -> bool:
    return client.stats.track(publisher, "video").received > 0


@contextlib.asynccontextmanager
async def _clients(http_url: str, port: int, meeting: str, count: int) -> AsyncIterator[list[MeetingClient]]:
    async with _PinnedApi(http_url, port) as api:
        clients = [
            MeetingClient(
                api, meeting, f"sub-{i}", auto_subscribe=True, can_publish=False, verify_media=False
            )
            for i in range(count)
        ]
        try:
            for chunk in range(0, count, 10):
                await asyncio.gather(*(c.join() for c in clients[chunk : chunk + 10]))
            yield clients
        finally:
            await asyncio.gather(*(c.leave() for c in clients), return_exceptions=True)


async def _run(server: _Server, where: str, subscribers: int, seconds: float) -> Run:
    meeting = f"cross-{uuid.uuid4().hex[:8]}"
    ports = server.worker_ports()
    pids = server.worker_pids()
    async with ControlApi(server.http_url) as api, _PinnedApi(server.http_url, ports[0]) as publisher_api:
        await api.ensure_meeting(meeting)
        publisher = MeetingClient(publisher_api, meeting, "publisher", verify_media=False)
        await publisher.join()
        try:
            for kind in ("audio", "video"):
                await publisher.publish(kind)
            port = ports[0] if where == "local" else ports[1]
            async with _clients(server.http_url, port, meeting, subscribers) as clients:
                async with asyncio.timeout(20):
                    for client in clients:
                        await client.wait_until(
                            functools.partial(_has_video, client, publisher.participant_id)
                        )
                await asyncio.sleep(1.0)
                frames0 = sum(_received(c) for c in clients)
                cpu0, t0 = [_cpu_ns(pid) for pid in pids], time.monotonic()
                await asyncio.sleep(seconds)
                cpu1, t1 = [_cpu_ns(pid) for pid in pids], time.monotonic()
                frames1 = sum(_received(c) for c in clients)
                lost = sum(c.stats.summary()["lost"] for c in clients)
                corrupt = sum(c.stats.summary()["corrupt"] for c in clients)
        finally:
            await publisher.leave()
    cpu = tuple((b - a) / 1e9 for a, b in zip(cpu0, cpu1, strict=True))
    return Run(where, subscribers, t1 - t0, cpu, frames1 - frames0, lost, corrupt)


def reader_share(records: int) -> float:
    """µs of reader CPU per 1,200-byte frame read from another worker's ring and routed to one subscriber."""
    name = f"darktower-bench-{uuid.uuid4().hex[:12]}"
    ring = Ring.create(name, 64 * 1024 * 1024, max_readers=2)
    try:
        verifier = TokenVerifier(ec.generate_private_key(ec.SECP256R1()).public_key(), "bench")
        core = ClusterCore(index=1, workers=2, incarnation=1, verifier=verifier, limits=LimitsConfig())
        core.session_opened(7, "m", 0)
        publisher, subscriber = cluster_session(0, 1, 3), cluster_session(1, 1, 7)
        members = tuple(
            MemberEntry(s, pb.Participant(participant_id=str(s)).SerializeToString())
            for s in (publisher, subscriber)
        )
        track = TrackEntry(1, publisher, pb.TRACK_KIND_VIDEO, "vp8", "", (subscriber,))
        core.control_record(0, Catalog(1, "m", 2, members, (track,)), 0)
        writer = RingWriter(ring)
        cursor = RingCursor(ring, 1)
        frame = encode_frame(
            track_id=1, group=0, object_seq=0, capture_us=0, payload=bytes(1200 - 24), keyframe=True
        )
        writer.write(RecordKind.MEDIA, MEDIA_HEADER.pack(publisher, 2, 1, 0, MEDIA_STARTS_GROUP) + frame)
        body = MEDIA_HEADER.pack(publisher, 2, 1, 0, 0) + frame
        best = float("inf")
        batch = 20_000  # written, then read back: well inside the ring, so none is overrun
        for _ in range(5):
            spent_ns = sent = 0
            for _ in range(max(1, records // batch)):
                for _ in range(batch):
                    writer.write(RecordKind.MEDIA, body)
                started = time.process_time_ns()
                while (item := cursor.next()) is not None:
                    if type(item) is Record:
                        sent += len(core.media_record(item.payload))
                spent_ns += time.process_time_ns() - started
            best = min(best, spent_ns / 1000 / sent)
        return best
    finally:
        Ring.unlink(name)


def _wake_reader(name: str, fifo: str, records: int, results: Any) -> None:
    """Another process: reads `records` records of ring `name`, sleeping on `fifo` between them."""

    async def read() -> None:
        ring = Ring.attach(name)
        done = asyncio.Event()
        got = 0

        def on_item(_cursor: RingCursor, _item: Record | Gap) -> None:
            nonlocal got
            got += 1
            if got >= records:
                done.set()

        reader = RingReader([RingCursor(ring, 1)], Wakeup(open_fifo(Path(fifo))), on_item)
        results.put("ready")
        started = time.process_time_ns()
        reader.start()
        await done.wait()
        results.put((time.process_time_ns() - started) / 1000 / got)

    uvloop.run(read())


def _udp_reader(records: int, results: Any) -> None:
    """Another process: receives `records` UDP datagrams on an asyncio endpoint."""

    async def receive() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        got = 0

        class Counting(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:  # noqa: ARG002 - counts only
                nonlocal got
                got += 1
                if got >= records:
                    done.set()

        transport, _ = await loop.create_datagram_endpoint(Counting, local_addr=("127.0.0.1", 0))
        results.put(transport.get_extra_info("sockname")[1])
        started = time.process_time_ns()
        await done.wait()
        results.put((time.process_time_ns() - started) / 1000 / got)

    uvloop.run(receive())


def idle_wakeups(records: int, rate: float) -> tuple[float, float]:
    """µs of CPU of an idle reader per record when each of `records` 1,200-byte records arrives alone
    (`rate` per second): woken through its FIFO by the ring's writer, and, for scale, woken by a UDP datagram."""
    context = multiprocessing.get_context("spawn")
    name = f"darktower-bench-{uuid.uuid4().hex[:12]}"
    fifo = Path(tempfile.mkdtemp(prefix="darktower-bench-"), "wake")
    ring = Ring.create(name, 16 * 1024 * 1024, max_readers=2)
    try:
        results = context.Queue()
        process = context.Process(target=_wake_reader, args=(name, str(fifo), records, results))
        process.start()
        results.get(timeout=30)
        writer = RingWriter(ring, {1: open_fifo(fifo)})
        for _ in range(records):
            writer.write(RecordKind.MEDIA, bytes(1200))
            time.sleep(1 / rate)
        ring_us = float(results.get(timeout=30))
        process.join()
        process = context.Process(target=_udp_reader, args=(records, results))
        process.start()
        port = int(results.get(timeout=30))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(records):
                sender.sendto(bytes(1200), ("127.0.0.1", port))
                time.sleep(1 / rate)
        udp_us = float(results.get(timeout=30))
        process.join()
        return ring_us, udp_us
    finally:
        Ring.unlink(name)
        shutil.rmtree(fifo.parent, ignore_errors=True)


async def _main(args: argparse.Namespace) -> None:
    with _serve(2) as server:
        runs = [
            await _run(server, where, args.subscribers, args.seconds)
            for _ in range(args.rounds)
            for where in ("local", "cross")
        ]
    share = reader_share(args.records)
    ring_wake, udp_wake = idle_wakeups(args.wakeups, 80)
    print(f"{args.subscribers} subscribers, {args.seconds:.0f} s each, 2 workers (publisher on worker 0)")
    print(
        "| subscribers on | µs worker CPU per delivered frame | worker 0 | worker 1 | frames | lost / corrupt |"
    )
    print("|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {'worker 0 (local)' if run.where == 'local' else 'worker 1 (cross)'} | {run.us_per_frame:.1f} | "
            f"{run.us_per_frame_on(0):.1f} | {run.us_per_frame_on(1):.1f} | {run.frames / run.seconds:,.0f} | "
            f"{run.lost} / {run.corrupt} |"
        )
    local = min((r for r in runs if r.where == "local"), key=lambda r: r.us_per_frame)
    cross = min((r for r in runs if r.where == "cross"), key=lambda r: r.us_per_frame)
    send_one = local.us_per_frame
    print(
        f"reader share of a crossing frame (ring read + routing, in process): {share:.2f} µs = "
        f"{100 * share / send_one:.1f} % of sending a frame to one subscriber ({send_one:.1f} µs, best local run); "
        f"crossing overall (best runs) adds {cross.us_per_frame - local.us_per_frame:+.1f} µs per delivered frame "
        f"({cross.us_per_frame / local.us_per_frame:.2f}x)"
    )
    print(
        f"idle reader woken for each record (80/s, separate processes): {ring_wake:.1f} µs per record; "
        f"an idle process woken by each UDP datagram, for scale: {udp_wake:.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="local and cross runs, alternating")
    parser.add_argument("--wakeups", type=int, default=400, help="records for the idle wake-up measurement")
    uvloop.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
