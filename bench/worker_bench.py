"""One worker under load: join-to-first-media, signaling round trip, and server CPU per delivered packet.

Starts a real `darktower serve` (one worker, one control plane) on free loopback ports, then, from this process:

1. **Fan-out cost.** One publisher sends real-rate synthetic media (50 audio datagrams/s, 30 video frames/s with
   a keyframe every 2 s) to 1, 10 and 50 subscribers for `--seconds`. The server's CPU time (every server
   process, read from `/proc/<pid>/schedstat`; the control plane and supervisor are idle meanwhile) is divided
   by the UDP datagrams the clients received (delivered packets) and by the frames the subscribers received
   (forwarded frames per subscriber). aioquic's own floor per packet is measured in the same run
   (`aioquic_floor.py`: two in-memory connections, no sockets) and the ratio printed, and so is aioquic's
   floor for this very traffic (`media_floor.py`: the same media replayed in memory, one publisher to N
   subscribers, small bursts each acknowledged on its own), which no adapter on aioquic can go below.
2. **Join-to-first-media.** `--joins` participants join one by one a meeting where a publisher sends audio and
   video: time from the start of the join (HTTP join included) to the first media frame, and to the first
   video frame (a keyframe the server asked the publisher for).
3. **Signaling round trip.** `--pings` sequential Ping -> Pong requests on one session.

    python bench/worker_bench.py [--seconds 5] [--subscribers 1,10,50] [--joins 40] [--pings 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from aioquic_floor import Floor, measure
from media_floor import RelayFloor, measure_relay

from darktower.client import transport
from darktower.client.api import ControlApi
from darktower.client.meeting import MeetingClient
from darktower.client.roster import RemoteTrack
from darktower.proto.frame import FrameHeader

_HTTP_URL = re.compile(r"HTTP API on (http://\S+)")
_READY = "darktower: ready"


class _PacketCounter:
    """Counts UDP datagrams arriving at every client in this process (the server's delivered packets)."""

    def __init__(self) -> None:
        self.count = 0
        original = transport._ClientProtocol.datagram_received  # noqa: SLF001 - bench instrumentation

        def counting(protocol: Any, data: bytes | str, addr: Any) -> None:
            self.count += 1
            original(protocol, data, addr)

        transport._ClientProtocol.datagram_received = counting  # type: ignore[method-assign,assignment] # noqa: SLF001


@dataclass
class _Server:
    process: subprocess.Popen[str]
    http_url: str

    def cpu_ns(self) -> int:
        """CPU time of the supervisor and every process below it, in nanoseconds."""
        total = 0
        for pid in _descendants(self.process.pid):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total


def _descendants(pid: int) -> Iterator[int]:
    yield pid
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                yield from _descendants(int(child))


@contextlib.contextmanager
def _serve() -> Iterator[_Server]:
    data_dir = tempfile.mkdtemp(prefix="darktower-bench-")
    executable = Path(sys.executable).with_name("darktower")
    process = subprocess.Popen(
        [str(executable), "serve", "--http-port", "0", "--quic-port", "0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # Every bench participant joins from 127.0.0.1: lift the per-address join limit.
        env={
            **os.environ,
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
            raise RuntimeError(f"darktower serve exited with {process.wait()} before it was ready")
        yield _Server(process, http_url)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class FanOut:
    subscribers: int
    seconds: float
    server_cpu_s: float
    packets: int
    frames: int
    lost: int
    corrupt: int

    @property
    def us_per_packet(self) -> float:
        return self.server_cpu_s * 1e6 / self.packets

    @property
    def us_per_frame_per_subscriber(self) -> float:
        return self.server_cpu_s * 1e6 / self.frames


@contextlib.asynccontextmanager
async def _participants(
    api: ControlApi, meeting: str, count: int, *, auto_subscribe: bool
) -> AsyncIterator[list[MeetingClient]]:
    clients = [
        MeetingClient(api, meeting, f"sub-{i}", auto_subscribe=auto_subscribe, verify_media=False)
        for i in range(count)
    ]
    try:
        for chunk in range(0, count, 10):
            await asyncio.gather(*(c.join() for c in clients[chunk : chunk + 10]))
        yield clients
    finally:
        await asyncio.gather(*(c.leave() for c in clients), return_exceptions=True)


def _has_media(client: MeetingClient) -> bool:
    return _received_frames(client) > 0


def _received_frames(client: MeetingClient) -> int:
    return sum(stats.received for stats in client.stats.tracks.values())


async def _fan_out(server: _Server, counter: _PacketCounter, subscribers: int, seconds: float) -> FanOut:
    meeting = f"fanout-{subscribers}"
    async with ControlApi(server.http_url) as api:
        await api.ensure_meeting(meeting)
        publisher = MeetingClient(api, meeting, "publisher")
        await publisher.join()
        try:
            for kind in ("audio", "video"):
                await publisher.publish(kind)
            async with _participants(api, meeting, subscribers, auto_subscribe=True) as clients:
                async with asyncio.timeout(10):
                    for client in clients:
                        await client.wait_until(functools.partial(_has_media, client))
                await asyncio.sleep(1.0)
                frames0 = sum(_received_frames(c) for c in clients)
                packets0, cpu0, t0 = counter.count, server.cpu_ns(), time.monotonic()
                await asyncio.sleep(seconds)
                cpu1, packets1, t1 = server.cpu_ns(), counter.count, time.monotonic()
                frames1 = sum(_received_frames(c) for c in clients)
                lost = sum(c.stats.summary()["lost"] for c in clients)
                corrupt = sum(c.stats.summary()["corrupt"] for c in clients)
        finally:
            await publisher.leave()
    return FanOut(
        subscribers, t1 - t0, (cpu1 - cpu0) / 1e9, packets1 - packets0, frames1 - frames0, lost, corrupt
    )


async def _one_join(api: ControlApi, meeting: str, name: str) -> tuple[float, float]:
    """Join-to-first-media and join-to-first-video of one participant, in milliseconds."""
    video_at: list[int] = []

    def on_frame(track: RemoteTrack, _header: FrameHeader, _data: bytes, _ok: bool) -> None:
        if track.kind == "video" and not video_at:
            video_at.append(time.monotonic_ns())

    start = time.monotonic_ns()
    client = MeetingClient(api, meeting, name, auto_subscribe=True, on_frame=on_frame)
    try:
        await client.join()
        async with asyncio.timeout(5):
            await client.wait_until(lambda: bool(video_at))
        media_ms = client.stats.join_to_first_media_ms
        assert media_ms is not None
        return media_ms, (video_at[0] - start) / 1e6
    finally:
        await client.leave()


async def _joins(server: _Server, joins: int) -> tuple[list[float], list[float]]:
    """Join-to-first-media and join-to-first-video of `joins` participants joining one after another."""
    results: list[tuple[float, float]] = []
    async with ControlApi(server.http_url) as api:
        await api.ensure_meeting("joins")
        publisher = MeetingClient(api, "joins", "publisher")
        await publisher.join()
        try:
            for kind in ("audio", "video"):
                await publisher.publish(kind)
            results = [await _one_join(api, "joins", f"joiner-{i}") for i in range(joins)]
        finally:
            await publisher.leave()
    return [m for m, _ in results], [v for _, v in results]


async def _pings(server: _Server, pings: int) -> list[float]:
    async with ControlApi(server.http_url) as api:
        await api.ensure_meeting("pings")
        client = MeetingClient(api, "pings", "pinger")
        await client.join()
        try:
            for _ in range(50):
                await client.ping()
            return [await client.ping() for _ in range(pings)]
        finally:
            await client.leave()


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


async def _run(args: argparse.Namespace, floor: Floor, relay: RelayFloor) -> None:
    counter = _PacketCounter()
    with _serve() as server:
        rtts = await _pings(server, args.pings)
        print(
            f"signaling round trip: p50 {_pct(rtts, 50):.2f} ms, p99 {_pct(rtts, 99):.2f} ms ({len(rtts)} pings)"
        )
        media, video = await _joins(server, args.joins)
        print(
            f"join-to-first-media: p50 {_pct(media, 50):.1f} ms, p99 {_pct(media, 99):.1f} ms; "
            f"join-to-first-video: p50 {_pct(video, 50):.1f} ms, p99 {_pct(video, 99):.1f} ms ({len(media)} joins)"
        )
    for subscribers in args.subscribers:
        with _serve() as server:
            result = await _fan_out(server, counter, subscribers, args.seconds)
        floor_us = floor.us_per_datagram
        relay_us = relay.us_per_packet(subscribers)
        print(
            f"fan-out to {result.subscribers:>2} subscribers: {result.us_per_packet:.1f} us server CPU per "
            f"delivered packet ({result.us_per_packet / floor_us:.2f}x the aioquic datagram floor, "
            f"{result.us_per_packet / floor.us_per_stream_packet:.2f}x the stream floor, "
            f"{result.us_per_packet / relay_us:.2f}x aioquic's {relay_us:.1f} us for this traffic), "
            f"{result.us_per_frame_per_subscriber:.1f} us per forwarded frame per subscriber; "
            f"{result.packets / result.seconds:.0f} packets/s, server CPU "
            f"{100 * result.server_cpu_s / result.seconds:.0f}% of a core, lost {result.lost}, "
            f"corrupt {result.corrupt}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 10, 50])
    parser.add_argument("--joins", type=int, default=40)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--floor-packets", type=int, default=20000)
    parser.add_argument(
        "--relay-seconds", type=float, default=10.0, help="simulated media for the relay floor"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    floor = measure(args.floor_packets)
    print(
        f"aioquic floor: {floor.us_per_datagram:.1f} us per 1,200-byte datagram, "
        f"{floor.us_per_stream_packet:.1f} us per stream packet"
    )
    relay = measure_relay(args.relay_seconds)
    print(
        "aioquic floor for this traffic (one publisher's media relayed in memory): "
        + ", ".join(f"{n} subscribers {relay.us_per_packet(n):.1f} us" for n in args.subscribers)
        + " per delivered packet"
    )
    uvloop.run(_run(args, floor, relay))


if __name__ == "__main__":
    main()
