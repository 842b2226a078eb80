"""The shared-memory media ring: write and read cost per record, and wake-up latency across processes.

1. **Write.** One process writes `--records` records of each size into a ring nobody reads (no wake-up
   check) and into one whose reader slots are all registered but busy (the wake-up check, a full fence,
   runs on every write): records/s and µs per record.
2. **Read, 1 and 3 readers.** Each reader is a separate process running `RingReader` on uvloop (zero-copy;
   its callback only counts records). This process writes `--records` records as fast as it can while
   they follow; each reader reports records read, records missed to overruns, its CPU µs per record read
   (`time.process_time`, so waiting costs nothing) and records/s from its first record to its last.
3. **Wake-up latency.** A reader process idles in its event loop; this process writes one record stamped
   with `time.perf_counter_ns()` (CLOCK_MONOTONIC, shared by all processes) every `--interval-ms`; the
   reader takes the difference when its callback runs: p50, p99 and max over `--samples` records.

    python bench/ring_bench.py [--records 100000] [--sizes 100,1200,10000] [--readers 1,3] [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from darktower.workers.ring import Gap, Record, RecordKind, Ring, RingCursor, RingWriter
from darktower.workers.wakeup import RingReader, Wakeup

CAPACITY = 64 << 20
"""Bytes of records per ring: 64 MiB, about 1 s of a 100-participant meeting's video at 500 kbit/s each."""
_END = b"end"
_STAMPED = 3
"""Kind of the latency run's records: a send time in their first 8 bytes."""


def _ring_name(tag: str) -> str:
    return f"dt-bench-{os.getpid()}-{tag}"


def bench_write(size: int, records: int) -> tuple[float, float]:
    """µs per record without and with the wake-up check (every slot registered, no reader idle)."""
    payload = os.urandom(size)
    results = []
    wakeups = [Wakeup() for _ in range(3)]
    for wake_fds in ({}, {slot: wakeup.fd for slot, wakeup in enumerate(wakeups)}):
        name = _ring_name("write")
        with Ring.create(name, CAPACITY) as ring:
            writer = RingWriter(ring, wake_fds)
            start = time.perf_counter()
            for _ in range(records):
                writer.write(RecordKind.MEDIA, payload)
            results.append((time.perf_counter() - start) / records * 1e6)
        Ring.unlink(name)
    for wakeup in wakeups:
        wakeup.close()
    return results[0], results[1]


def _reader_process(name: str, slot: int, wakeup: Wakeup, conn: Connection) -> None:
    uvloop.run(_read_until_end(name, slot, wakeup, conn))


async def _read_until_end(name: str, slot: int, wakeup: Wakeup, conn: Connection) -> None:
    ring = Ring.attach(name)
    cursor = RingCursor(ring, slot)
    done = asyncio.Event()
    read = missed = 0
    first_s = 0.0
    latencies: list[int] = []

    def on_item(_: RingCursor, item: Record | Gap) -> None:
        nonlocal read, missed, first_s
        if isinstance(item, Gap):
            missed += item.length
        elif item.kind == RecordKind.CONTROL:
            done.set()
        elif item.kind == RecordKind.MEDIA:
            if not read:
                first_s = time.perf_counter()
            read += 1
        else:
            latencies.append(time.perf_counter_ns() - int.from_bytes(item.payload[:8], "little"))

    reader = RingReader([cursor], wakeup, on_item)
    reader.start()
    conn.send("ready")
    cpu_start = time.process_time()
    await done.wait()
    cpu_s = time.process_time() - cpu_start
    wall_s = time.perf_counter() - first_s
    reader.close()
    ring.close()
    conn.send({"read": read, "missed": missed, "cpu_s": cpu_s, "wall_s": wall_s, "latencies_ns": latencies})


def _start_readers(name: str, count: int) -> tuple[list[Any], list[Connection], dict[int, int], list[Wakeup]]:
    context = multiprocessing.get_context("spawn")
    processes, conns, wakeups = [], [], []
    for slot in range(count):
        wakeup = Wakeup()
        ours, theirs = context.Pipe()
        process = context.Process(target=_reader_process, args=(name, slot, wakeup, theirs))
        process.start()
        processes.append(process)
        conns.append(ours)
        wakeups.append(wakeup)
    for conn in conns:
        assert conn.recv() == "ready"
    return processes, conns, {slot: wakeup.fd for slot, wakeup in enumerate(wakeups)}, wakeups


def _finish(processes: list[Any], conns: list[Connection], wakeups: list[Wakeup]) -> list[dict[str, Any]]:
    results = [conn.recv() for conn in conns]
    for process in processes:
        process.join()
    for wakeup in wakeups:
        wakeup.close()
    return results


def bench_read(size: int, records: int, readers: int) -> tuple[float, list[dict[str, Any]]]:
    """The writer's µs per record while `readers` follow it, and each reader's report."""
    name = _ring_name(f"read{readers}")
    payload = os.urandom(size)
    with Ring.create(name, CAPACITY, max_readers=readers) as ring:
        processes, conns, wake_fds, wakeups = _start_readers(name, readers)
        writer = RingWriter(ring, wake_fds)
        start = time.perf_counter()
        for _ in range(records):
            writer.write(RecordKind.MEDIA, payload)
        write_us = (time.perf_counter() - start) / records * 1e6
        writer.write(RecordKind.CONTROL, _END)
        results = _finish(processes, conns, wakeups)
    Ring.unlink(name)
    return write_us, results


def bench_latency(samples: int, interval_s: float) -> list[int]:
    name = _ring_name("latency")
    with Ring.create(name, CAPACITY, max_readers=1) as ring:
        processes, conns, wake_fds, wakeups = _start_readers(name, 1)
        writer = RingWriter(ring, wake_fds)
        for _ in range(samples):
            time.sleep(interval_s)
            writer.write(_STAMPED, time.perf_counter_ns().to_bytes(8, "little"))
        writer.write(RecordKind.CONTROL, _END)
        (result,) = _finish(processes, conns, wakeups)
    Ring.unlink(name)
    latencies: list[int] = result["latencies_ns"]
    return latencies


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sizes", default="100,1200,10000")
    parser.add_argument("--readers", default="1,3")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=1.0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    reader_counts = [int(count) for count in args.readers.split(",")]
    print(f"ring bench: {os.cpu_count()} CPUs, ring of {CAPACITY >> 20} MiB, {args.records} records per run")

    print("\nwrite (one process)           bytes   records/s   µs/record")
    for size in sizes:
        bare_us, checked_us = bench_write(size, args.records)
        print(f"  no wake-up check           {size:6d}  {1e6 / bare_us:10,.0f}   {bare_us:8.2f}")
        print(f"  3 busy readers registered  {size:6d}  {1e6 / checked_us:10,.0f}   {checked_us:8.2f}")

    print("\nread (readers in separate processes, uvloop, zero-copy)")
    print("  readers  bytes  writer µs/rec  reader  read      missed   reader CPU µs/rec  reader records/s")
    for readers in reader_counts:
        for size in sizes:
            write_us, results = bench_read(size, args.records, readers)
            for slot, result in enumerate(results):
                cpu_us = result["cpu_s"] / max(1, result["read"]) * 1e6
                rate = result["read"] / result["wall_s"] if result["wall_s"] > 0 else 0.0
                print(
                    f"  {readers:7d}  {size:5d}  {write_us:13.2f}  {slot:6d}  {result['read']:8d}  "
                    f"{result['missed']:7d}  {cpu_us:17.2f}  {rate:16,.0f}"
                )

    latencies = bench_latency(args.samples, args.interval_ms / 1000)
    print(
        f"\nwake-up latency, idle reader in another process ({len(latencies)} records, one every {args.interval_ms} ms)"
    )
    print(
        f"  p50 {_percentile(latencies, 0.5):.1f} µs   p99 {_percentile(latencies, 0.99):.1f} µs   "
        f"max {max(latencies) / 1000:.1f} µs   mean {statistics.fmean(latencies) / 1000:.1f} µs"
    )


if __name__ == "__main__":
    main()
