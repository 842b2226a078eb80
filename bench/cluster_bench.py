"""Scaling: delivered frames/s and server CPU per delivered frame with 1 vs. N workers.

For each worker count N this starts a real `darktower serve --workers N` on loopback and loads it with N x
`--meetings-per-worker` independent meetings (each worker owns as many: the same load per worker, so N
workers get N times the load of one), each with one publisher of real-rate synthetic media (50 audio
frames/s, 30 video frames/s) and `--subscribers` subscribers. The clients are the Python client (`MeetingClient`, no byte checks) in `--client-processes`
separate processes, so they can use every core too. After every subscriber has media and a warm-up second,
the bench counts, over `--seconds`:

- **delivered frames/s**: media frames the subscribers received (audio and video), all processes summed;
- **server CPU**: CPU time of every server process (supervisor, workers, control plane) from
  `/proc/<pid>/task/*/schedstat`, and per worker; divided by the delivered frames it is the server's CPU
  cost per delivered frame;
- **client CPU**: the client processes' own CPU time (`time.process_time`).

Reading it on a small machine: the clients run on the same cores as the server and cost about as much per
frame as the server does (each frame is QUIC-decrypted and acknowledged by a Python client), so delivered
frames/s is bounded by the whole machine, not by the server: on 2 cores the frames/s ratio says little
about the server. What carries over to a machine where the server has the cores to itself is the server's
CPU per delivered frame with N workers against 1 worker: the capacity ratio of N workers, each with a core
of its own, is N x (CPU per frame with 1 worker) / (CPU per frame with N workers), printed as "projected".

`--steering port-per-worker` (the default) makes the control plane send each meeting's participants to its
owner worker, so every meeting is served by one worker; `reuseport-cbpf` spreads connections by the kernel
(participants of one meeting then meet across workers, which needs the cluster's cross-worker routing).

    python bench/cluster_bench.py [--workers 1,2] [--meetings-per-worker 2] [--subscribers 10] [--seconds 10]
                                  [--client-processes 2] [--steering port-per-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import uvloop

from darktower.client.api import ControlApi
from darktower.client.errors import ClientError
from darktower.client.meeting import MeetingClient
from darktower.supervisor.status import read_status
from darktower.workers.shard import owner_index

_HTTP_URL = re.compile(r"HTTP API on (http://\S+)")
_READY = "darktower: ready"
_MEDIA_TIMEOUT_S = 60.0
_JOIN_ATTEMPTS = 3
_PATIENT_S: Final = 30.0
"""Connect and request timeout: the clients share the cores with the server they load."""


@dataclass
class _Server:
    process: subprocess.Popen[str]
    http_url: str
    data_dir: str

    def worker_pids(self) -> list[int]:
        return [worker["pid"] for worker in read_status(self.data_dir)["workers"]]


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, in nanoseconds (0 once it is gone)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def _descendants(pid: int) -> Iterator[int]:
    yield pid
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    yield from _descendants(int(child))


@contextlib.contextmanager
def _serve(workers: int, steering: str) -> Iterator[_Server]:
    data_dir = tempfile.mkdtemp(prefix="darktower-cluster-bench-")
    executable = Path(sys.executable).with_name("darktower")
    log_path = Path(data_dir) / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [str(executable), "serve", "--http-port", "0", "--quic-port", "0", "--data-dir", data_dir,
         "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={
            **os.environ,
            "DARKTOWER_SERVER__STEERING": steering,
            "DARKTOWER_LOG__LEVEL": "warning",
            # Every bench participant joins from 127.0.0.1: lift the per-address join limit.
            "DARKTOWER_RATE_LIMITS__JOIN_BURST": "1000000",
            "DARKTOWER_RATE_LIMITS__JOIN_PER_MINUTE": "1000000",
        },
    )  # fmt: skip
    try:
        assert process.stdout is not None
        http_url = ""
        for line in process.stdout:
            if match := _HTTP_URL.search(line):
                http_url = match.group(1)
            if _READY in line:
                break
        else:
            code = process.wait()
            tail = "\n".join(log_path.read_text().splitlines()[-20:])
            raise RuntimeError(f"darktower serve exited with {code} before it was ready:\n{tail}")
        yield _Server(process, http_url, data_dir)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def meeting_ids(meetings: int, workers: int) -> list[str]:
    """`meetings` ids whose owners go round-robin over the workers."""
    candidates = (f"bench-{n}" for n in itertools.count())
    return [
        next(c for c in candidates if owner_index(c, workers) == index % workers) for index in range(meetings)
    ]


# --- a client process ---------------------------------------------------------------------------------


def _received(clients: list[MeetingClient]) -> int:
    return sum(stats.received for client in clients for stats in client.stats.tracks.values())


def _has_media(client: MeetingClient) -> bool:
    return _received([client]) > 0


def _lost(clients: list[MeetingClient]) -> int:
    return sum(int(client.stats.summary()["lost"]) for client in clients)


async def _retried(call: Callable[[], Awaitable[object]]) -> None:
    """Runs `call`, retrying what a machine loaded by this very bench causes: an HTTP connection the
    control plane closed after its keep-alive timeout, or a slow answer."""
    for attempt in range(_JOIN_ATTEMPTS):
        try:
            await call()
        except ClientError as exc:
            if attempt == _JOIN_ATTEMPTS - 1 or exc.code not in {"unavailable", "timeout"}:
                raise
        else:
            return


def _client(api: ControlApi, meeting: str, name: str, *, auto_subscribe: bool) -> MeetingClient:
    return MeetingClient(
        api,
        meeting,
        name,
        auto_subscribe=auto_subscribe,
        verify_media=False,
        connect_timeout=_PATIENT_S,
        request_timeout=_PATIENT_S,
    )


async def _join(client: MeetingClient) -> None:
    await _retried(client.join)


async def _drive(http_url: str, meetings: list[str], subscribers: int, conn: Connection) -> None:
    everyone: list[MeetingClient] = []
    receivers: list[MeetingClient] = []
    async with ControlApi(http_url, timeout=30.0) as api:
        try:
            for meeting in meetings:
                await _retried(functools.partial(api.ensure_meeting, meeting))
                publisher = _client(api, meeting, "publisher", auto_subscribe=False)
                everyone.append(publisher)
                await _join(publisher)
                await publisher.publish("audio")
                await publisher.publish("video")
                group = [_client(api, meeting, f"sub-{i}", auto_subscribe=True) for i in range(subscribers)]
                everyone.extend(group)
                receivers.extend(group)
                for chunk in range(0, subscribers, 10):
                    await asyncio.gather(*(_join(c) for c in group[chunk : chunk + 10]))
            async with asyncio.timeout(_MEDIA_TIMEOUT_S):
                for client in receivers:
                    await client.wait_until(functools.partial(_has_media, client))
            conn.send("ready")
            assert await asyncio.to_thread(conn.recv) == "start"
            frames, lost, cpu = _received(receivers), _lost(receivers), time.process_time()
            assert await asyncio.to_thread(conn.recv) == "stop"
            conn.send(
                {
                    "frames": _received(receivers) - frames,
                    "lost": _lost(receivers) - lost,
                    "cpu_s": time.process_time() - cpu,
                }
            )
        finally:
            await asyncio.gather(*(client.leave() for client in everyone), return_exceptions=True)


def _client_process(http_url: str, meetings: list[str], subscribers: int, conn: Connection) -> None:
    uvloop.run(_drive(http_url, meetings, subscribers, conn))


# --- one measurement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    workers: int
    seconds: float
    frames: int
    lost: int
    server_cpu_s: float
    worker_cpu_s: list[float]
    client_cpu_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def us_per_frame(self) -> float:
        return self.server_cpu_s * 1e6 / self.frames


def measure(args: argparse.Namespace, workers: int) -> Run:
    context = multiprocessing.get_context("spawn")
    with _serve(workers, args.steering) as server:
        meetings = meeting_ids(args.meetings_per_worker * workers, workers)
        groups = [meetings[i :: args.client_processes] for i in range(args.client_processes)]
        links: list[Connection] = []
        processes = []
        for group in groups:
            parent, child = context.Pipe()
            process = context.Process(
                target=_client_process, args=(server.http_url, group, args.subscribers, child)
            )
            process.start()
            child.close()
            links.append(parent)
            processes.append(process)
        try:
            for link in links:
                try:
                    ready = link.poll(_MEDIA_TIMEOUT_S * 2) and link.recv() == "ready"
                except EOFError:
                    ready = False
                if not ready:
                    raise RuntimeError("a client process failed (its traceback is above) or got no media")
            time.sleep(1.0)
            pids = list(_descendants(server.process.pid))
            workers_pids = server.worker_pids()
            before = {pid: _cpu_ns(pid) for pid in pids}
            start = time.monotonic()
            for link in links:
                link.send("start")
            time.sleep(args.seconds)
            for link in links:
                link.send("stop")
            after = {pid: _cpu_ns(pid) for pid in pids}
            seconds = time.monotonic() - start
            reports: list[dict[str, Any]] = [link.recv() for link in links]
        finally:
            for process in processes:
                process.join(30)
                if process.is_alive():
                    process.kill()
    return Run(
        workers=workers,
        seconds=seconds,
        frames=sum(r["frames"] for r in reports),
        lost=sum(r["lost"] for r in reports),
        server_cpu_s=sum(after[pid] - before[pid] for pid in pids) / 1e9,
        worker_cpu_s=[(after[pid] - before[pid]) / 1e9 for pid in workers_pids],
        client_cpu_s=sum(r["cpu_s"] for r in reports),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--meetings-per-worker", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--steering", default="port-per-worker")
    args = parser.parse_args()
    print(
        f"machine: {len(os.sched_getaffinity(0))} usable cores, Python {sys.version.split()[0]}; "
        f"{args.meetings_per_worker} meetings per worker x (1 publisher + {args.subscribers} subscribers), "
        f"{args.client_processes} client processes, {args.seconds:.0f} s, steering {args.steering}"
    )
    runs = []
    for workers in args.workers:
        run = measure(args, workers)
        runs.append(run)
        per_worker = ", ".join(f"{100 * cpu / run.seconds:.0f}%" for cpu in run.worker_cpu_s)
        print(
            f"{workers} workers: {run.frames_per_s:,.0f} delivered frames/s, server CPU "
            f"{100 * run.server_cpu_s / run.seconds:.0f}% of a core (workers {per_worker}), "
            f"{run.us_per_frame:.1f} us server CPU per delivered frame, client CPU "
            f"{100 * run.client_cpu_s / run.seconds:.0f}% ({run.client_cpu_s * 1e6 / run.frames:.1f} us per "
            f"frame), lost {run.lost}"
        )
    base = runs[0]
    for run in runs[1:]:
        measured = run.frames_per_s / base.frames_per_s
        projected = run.workers / base.workers * base.us_per_frame / run.us_per_frame
        print(
            f"{run.workers} vs {base.workers} workers: delivered frames/s x{measured:.2f} measured here; "
            f"server CPU per frame x{run.us_per_frame / base.us_per_frame:.2f}, so x{projected:.2f} "
            "projected with a core per worker"
        )


if __name__ == "__main__":
    main()
