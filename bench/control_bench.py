"""Control-plane API latency and join throughput on PostgreSQL + Redis.

Starts a throwaway PostgreSQL cluster and redis-server (`darktower.control.devservers`) and one control-plane
process exactly as the supervisor does (`control_process`: hypercorn on uvloop, PostgreSQL durable store,
Redis ephemeral store, production argon2id parameters unless `--fast-hashing`; rate limits raised out of the
way). Then, from this process (httpx on uvloop, `--concurrency` requests in flight over keep-alive
connections):

1. **login**: `--users` accounts are registered, then `--requests` sign-ins round-robin over them;
2. **create meeting**: `--requests` creates, each with a signed-in user's access token;
3. **join**: `--requests` joins spread over the created meetings;
4. **joins/s**: joins for `--seconds` at the same concurrency: joins per second of one control-plane process.

Latency is client-side (request sent to response read): p50/p95/p99 and the mean. The client shares the
machine's cores with the server, so figures are upper bounds on the server's own time; the control plane's
own CPU per request (/proc/<pid>/stat; the argon2 hashing threads included) is printed beside them, the
figure that holds on a busy machine.

    python bench/control_bench.py [--concurrency 16] [--requests 400] [--users 32] [--seconds 10] [--fast-hashing]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop

from darktower.control.devservers import throwaway_postgres, throwaway_redis
from darktower.control.main import control_process
from darktower.control.passwords import PasswordHasher
from darktower.core.config import from_mapping

PASSWORD = "correct horse battery staple"
UNLIMITED = 1_000_000
TRANSPORT_ERRORS: list[str] = []
"""Requests whose connection broke (counted, left out of the latencies, reported)."""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "mean": statistics.fmean(ordered) * 1000}


async def timed(
    concurrency: int, count: int, request: Callable[[int], Awaitable[httpx.Response]], expect: int
) -> tuple[list[float], float]:
    """Runs `request(i)` for i in 0..count-1 with `concurrency` in flight; latencies (s) and wall time (s)."""
    indices = iter(range(count))
    latencies: list[float] = []

    async def lane() -> None:
        for index in indices:
            started = time.perf_counter()
            try:
                response = await request(index)
            except httpx.TransportError as exc:
                TRANSPORT_ERRORS.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code != expect:
                raise RuntimeError(f"expected {expect}, got {response.status_code}: {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def joins_per_second(
    client: httpx.AsyncClient, meetings: list[str], concurrency: int, seconds: float
) -> float:
    deadline = time.perf_counter() + seconds
    done = 0
    cycle = itertools.cycle(meetings)

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            try:
                response = await client.post(
                    f"/v1/meetings/{next(cycle)}/join", json={"display_name": "Bench"}
                )
            except httpx.TransportError as exc:
                TRANSPORT_ERRORS.append(repr(exc))
                continue
            if response.status_code != 200:
                raise RuntimeError(f"join: {response.status_code} {response.text}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(base_url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        emails = [f"bench{i}@example.test" for i in range(args.users)]
        registered, _ = await timed(
            args.concurrency,
            len(emails),
            lambda i: client.post("/v1/users", json={"email": emails[i], "password": PASSWORD}),
            201,
        )
        tokens: list[str] = []

        async def login(i: int) -> httpx.Response:
            response = await client.post(
                "/v1/auth/login", json={"email": emails[i % len(emails)], "password": PASSWORD}
            )
            if response.status_code == 200 and len(tokens) < len(emails):
                tokens.append(response.json()["access_token"])
            return response

        cpu = cpu_s(server_pid)
        login_lat, login_wall = await timed(args.concurrency, args.requests, login, 200)
        login_cpu, cpu = cpu_s(server_pid) - cpu, cpu_s(server_pid)
        meetings: list[str] = []

        async def create(i: int) -> httpx.Response:
            response = await client.post(
                "/v1/meetings",
                json={"title": f"Bench {i}"},
                headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
            )
            if response.status_code == 201:
                meetings.append(response.json()["meeting_id"])
            return response

        create_lat, create_wall = await timed(args.concurrency, args.requests, create, 201)
        create_cpu, cpu = cpu_s(server_pid) - cpu, cpu_s(server_pid)

        async def join(i: int) -> httpx.Response:
            return await client.post(
                f"/v1/meetings/{meetings[i % len(meetings)]}/join", json={"display_name": "Bench"}
            )

        join_lat, join_wall = await timed(args.concurrency, args.requests, join, 200)
        join_cpu = cpu_s(server_pid) - cpu
        rate = await joins_per_second(client, meetings, args.concurrency, args.seconds)
    return {
        "register": (percentiles(registered), len(registered)),
        "login": (percentiles(login_lat), args.requests / login_wall, login_cpu / args.requests),
        "create meeting": (percentiles(create_lat), args.requests / create_wall, create_cpu / args.requests),
        "join": (percentiles(join_lat), args.requests / join_wall, join_cpu / args.requests),
        "joins/s": rate,
    }


async def argon2_ms(time_cost: int, memory_kib: int, rounds: int = 5) -> float:
    """One argon2id verification, alone on one core."""
    hasher = PasswordHasher(time_cost=time_cost, memory_kib=memory_kib, max_concurrent=1)
    hashed = await hasher.hash(PASSWORD)
    started = time.perf_counter()
    for _ in range(rounds):
        await hasher.verify(hashed, PASSWORD)
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fast-hashing", action="store_true", help="argon2id t=1, 64 KiB (not production)")
    args = parser.parse_args()
    hashing = {"password_hash_time_cost": 1, "password_hash_memory_kib": 64} if args.fast_hashing else {}
    with throwaway_postgres() as dsn, throwaway_redis() as redis_url, tempfile.TemporaryDirectory() as data:
        config = from_mapping(
            {
                "server": {"data_dir": data, "http_port": 0, "web_root": data},
                "auth": hashing,
                "store": {
                    "durable": "postgres",
                    "postgres_dsn": dsn,
                    "ephemeral": "redis",
                    "redis_url": redis_url,
                },
                "rate_limits": {
                    f"{name}_{kind}": UNLIMITED
                    for name in ("login", "account_login", "join")
                    for kind in ("burst", "per_minute")
                },
                "log": {"level": "warning", "format": "text"},
            }
        )
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=control_process, args=(config.to_dict(), 4433, [], child), daemon=True
        )
        process.start()
        child.close()
        if not parent.poll(60):
            raise SystemExit("the control plane did not start")
        ready = parent.recv()
        if "http_port" not in ready:
            raise SystemExit(f"the control plane failed: {ready}")
        try:
            assert process.pid is not None
            results = uvloop.run(run(f"http://127.0.0.1:{ready['http_port']}", process.pid, args))
        finally:
            process.terminate()
            process.join(30)
    auth = config.auth
    print(f"concurrency {args.concurrency}, {args.requests} requests per operation, {args.users} users")
    print(
        f"argon2id t={auth.password_hash_time_cost} m={auth.password_hash_memory_kib} KiB: "
        f"{uvloop.run(argon2_ms(auth.password_hash_time_cost, auth.password_hash_memory_kib)):.1f} ms per verify"
    )
    header = f"{'operation':<16}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>9}"
    print(f"{header}{'server CPU ms/req':>19}")
    for name in ("login", "create meeting", "join"):
        stats, rate, cpu = results[name]
        figures = "".join(f"{stats[key]:>9.1f}" for key in ("p50", "p95", "p99", "mean"))
        print(f"{name:<16}{figures}{rate:>9.0f}{cpu * 1000:>19.2f}")
    if TRANSPORT_ERRORS:
        print(f"transport errors (left out): {len(TRANSPORT_ERRORS)}, first: {TRANSPORT_ERRORS[0]}")
    print(f"joins/s, one control-plane process, {args.seconds:g} s closed loop: {results['joins/s']:.0f}")


if __name__ == "__main__":
    main()
