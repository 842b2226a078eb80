"""The shared-memory media ring on real POSIX shared memory: records, overruns, corruption, wake-ups, processes."""

from __future__ import annotations

import asyncio
import mmap
import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import posix_ipc  # type: ignore[import-not-found]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.workers.ring import (
    HEADER_SIZE,
    Gap,
    GapReason,
    Record,
    RecordKind,
    Ring,
    RingCursor,
    RingError,
    RingWriter,
    go_idle,
)
from darktower.workers.wakeup import RingReader, Wakeup

DEADLINE_S = 10.0


def ring_name() -> str:
    return f"dt-test-ring-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def payload_for(seq: int, size: int) -> bytes:
    """A payload that names its record in every 8 bytes, so a torn or misplaced read cannot pass for it."""
    return (seq.to_bytes(8, "little") * (size // 8 + 1))[:size]


@pytest.fixture
def make_ring() -> Iterator[Callable[..., Ring]]:
    """Creates rings under unique names; closes and unlinks every one at teardown."""
    rings: list[Ring] = []

    def make(capacity: int = 4096, **options: int) -> Ring:
        ring = Ring.create(ring_name(), capacity, **options)
        rings.append(ring)
        return ring

    yield make
    for ring in rings:
        ring.close()
        Ring.unlink(ring.name)


def scribble(ring: Ring, offset: int, data: bytes) -> None:
    """Overwrite bytes of the segment through a separate mapping, as a faulty process would."""
    shm = posix_ipc.SharedMemory("/" + ring.name)
    with mmap.mmap(shm.fd, shm.size) as memory:
        memory[offset : offset + len(data)] = data
    shm.close_fd()


# --- segments ---------------------------------------------------------------------------------------------


def test_create_attach_unlink() -> None:
    name = ring_name()
    ring = Ring.create(name, 8192, max_readers=3, index_slots=32)
    try:
        with pytest.raises(RingError, match="cannot create"):
            Ring.create(name, 8192)
        with Ring.attach(name) as other:
            assert (other.capacity, other.index_slots, other.max_readers) == (8192, 32, 3)
            assert other.max_payload == 2048
            RingWriter(other).write(RecordKind.MEDIA, b"hello")
        cursor = RingCursor(ring, 0, start=0)
        record = cursor.next()
        assert isinstance(record, Record)
        assert (record.seq, record.kind, bytes(record.payload)) == (0, RecordKind.MEDIA, b"hello")
        del record
    finally:
        ring.close()
        assert Ring.unlink(name)
    assert not Ring.unlink(name)
    with pytest.raises(RingError, match="cannot attach"):
        Ring.attach(name)


def test_attach_refuses_a_segment_that_is_not_a_ring() -> None:
    name = ring_name()
    posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=16384).close_fd()
    try:
        with pytest.raises(RingError, match="not a version-1 ring"):
            Ring.attach(name)
    finally:
        Ring.unlink(name)


@pytest.mark.parametrize(
    ("capacity", "options", "message"),
    [
        (1000, {}, "multiple of 64"),
        (512, {}, "multiple of 64"),
        (4096, {"index_slots": 24}, "power of two"),
        (4096, {"index_slots": 8}, "power of two"),
        (4096, {"max_readers": 0}, "reader slots"),
        (4096, {"max_readers": 65}, "reader slots"),
    ],
)
def test_create_refuses_bad_geometry(capacity: int, options: dict[str, int], message: str) -> None:
    name = ring_name()
    with pytest.raises(RingError, match=message):
        Ring.create(name, capacity, **options)
    assert not Ring.unlink(name)


def test_writer_refuses_oversized_records_and_kinds(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(4096)
    writer = RingWriter(ring)
    writer.write(RecordKind.CONTROL, bytes(1024))
    with pytest.raises(RingError, match="exceeds"):
        writer.write(RecordKind.MEDIA, bytes(1025))
    with pytest.raises(RingError, match="16 bits"):
        writer.write(0x10000, b"")
    with pytest.raises(RingError, match="reader slot"):
        RingWriter(ring, {16: 0})
    with pytest.raises(RingError, match="reader slot"):
        RingCursor(ring, 16)
    assert writer.next_seq == 1


# --- records ----------------------------------------------------------------------------------------------


def test_records_round_trip_with_kinds_and_empty_payloads(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(8192)
    writer = RingWriter(ring)
    cursor = RingCursor(ring, 0)
    sizes = [0, 1, 7, 8, 100, 2048]
    for seq, size in enumerate(sizes):
        assert writer.write(seq % 3, payload_for(seq, size)) == seq
    for seq, size in enumerate(sizes):
        item = cursor.next(copy=seq % 2 == 1)
        assert isinstance(item, Record)
        assert (item.seq, item.kind, bytes(item.payload)) == (seq, seq % 3, payload_for(seq, size))
        assert cursor.intact(item)
    del item
    assert cursor.next() is None
    assert (cursor.next_seq, cursor.lag, cursor.missed, cursor.corrupt) == (6, 0, 0, 0)


def test_a_new_cursor_starts_at_the_newest_record_unless_told(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    writer = RingWriter(ring)
    for seq in range(3):
        writer.write(RecordKind.MEDIA, payload_for(seq, 10))
    assert RingCursor(ring, 0).next() is None
    assert RingCursor(ring, 1, start=99).next_seq == 3
    first = RingCursor(ring, 2, start=1).next()
    assert isinstance(first, Record)
    assert first.seq == 1
    del first


def test_a_restarted_writer_continues_the_sequence(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    cursor = RingCursor(ring, 0)
    RingWriter(ring).write(RecordKind.MEDIA, b"a")
    with Ring.attach(ring.name) as again:
        successor = RingWriter(again)
        assert successor.next_seq == 1
        assert successor.write(RecordKind.MEDIA, b"b") == 1
    items = [cursor.next(copy=True), cursor.next(copy=True), cursor.next()]
    assert [(item.seq, bytes(item.payload)) for item in items if isinstance(item, Record)] == [
        (0, b"a"),
        (1, b"b"),
    ]
    assert items[2] is None


def test_an_overrun_reader_skips_to_the_oldest_intact_record(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(4096, index_slots=16)
    writer = RingWriter(ring)
    cursor = RingCursor(ring, 0)
    for seq in range(40):
        writer.write(RecordKind.MEDIA, payload_for(seq, 8))
    gap = cursor.next()
    assert gap == Gap(0, 24, GapReason.OVERRUN)
    seqs = []
    while isinstance(item := cursor.next(), Record):
        seqs.append(item.seq)
    assert seqs == list(range(24, 40))
    assert (cursor.missed, cursor.overruns, cursor.corrupt) == (24, 1, 0)


def test_zero_copy_records_are_checked_for_laps_and_copies_survive_them(
    make_ring: Callable[..., Ring],
) -> None:
    ring = make_ring(4096)
    writer = RingWriter(ring)
    viewer, copier = RingCursor(ring, 0), RingCursor(ring, 1)
    writer.write(RecordKind.MEDIA, payload_for(0, 1000))
    view, copy = viewer.next(), copier.next(copy=True)
    assert isinstance(view, Record)
    assert isinstance(copy, Record)
    for seq in range(1, 5):
        writer.write(RecordKind.MEDIA, payload_for(seq, 1000))
    assert not viewer.intact(view)
    assert bytes(view.payload) != payload_for(0, 1000)
    assert bytes(copy.payload) == payload_for(0, 1000)
    del view


def test_stats_show_each_reader(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(4096, index_slots=16)
    writer = RingWriter(ring)
    cursor, idle = RingCursor(ring, 2, start=0), RingCursor(ring, 5)
    for seq in range(20):
        writer.write(RecordKind.MEDIA, payload_for(seq, 4))
    assert go_idle([idle]) is False
    assert isinstance(cursor.next(), Gap)
    stats = ring.stats()
    assert stats.next_seq == 20
    assert [(r.slot, r.pid, r.next_seq, r.lag, r.missed, r.overruns, r.idle) for r in stats.readers] == [
        (2, os.getpid(), 4, 16, 4, 1, False),
        (5, os.getpid(), 0, 20, 0, 0, False),
    ]
    successor = RingCursor(ring, 2)
    assert (successor.next_seq, successor.missed, successor.overruns) == (20, 4, 1), (
        "a restart keeps the counts"
    )


# --- hypothesis: arbitrary sizes and reader speeds against a model of what the ring keeps -----------------


@dataclass
class Model:
    """Where each record lies and which are still intact: the placement rule of the ring's format."""

    capacity: int
    slots: int
    starts: list[int] = field(default_factory=list)
    end: int = 0

    def write(self, size: int) -> None:
        aligned = (HEADER_SIZE + size + 7) & ~7
        if self.end % self.capacity + aligned > self.capacity:
            self.end += self.capacity - self.end % self.capacity
        self.starts.append(self.end)
        self.end += aligned

    def intact(self, seq: int) -> bool:
        return seq >= len(self.starts) - self.slots and self.starts[seq] >= self.end - self.capacity

    def oldest_intact_from(self, seq: int) -> int:
        while seq < len(self.starts) and not self.intact(seq):
            seq += 1
        return seq


geometry = st.sampled_from([(1024, 16), (2048, 16), (4096, 32), (4096, 64)])


@st.composite
def operations(draw: st.DrawFn, capacity: int, readers: int) -> list[tuple[str, int, int]]:
    """("write", size, burst) writes `burst` records of `size` bytes; ("read", reader, steps) reads up to `steps`."""
    size = st.one_of(st.integers(0, 64), st.integers(0, capacity // 4))
    write = st.tuples(st.just("write"), size, st.integers(1, 10))
    read = st.tuples(st.just("read"), st.integers(0, readers - 1), st.integers(1, 12))
    return draw(st.lists(st.one_of(write, read), max_size=60))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), geometry=geometry, readers=st.integers(1, 3))
def test_readers_never_see_torn_or_reordered_records_and_count_overruns_exactly(
    data: st.DataObject, geometry: tuple[int, int], readers: int
) -> None:
    capacity, slots = geometry
    ops = data.draw(operations(capacity, readers))
    name = ring_name()
    ring = Ring.create(name, capacity, index_slots=slots, max_readers=readers)
    try:
        model = Model(capacity, slots)
        writer = RingWriter(ring)
        cursors = [RingCursor(ring, slot, start=0) for slot in range(readers)]
        written: list[tuple[int, bytes]] = []
        missed = [0] * readers
        for op, a, b in ops:
            if op == "write":
                for _ in range(b):
                    kind, payload = len(written) % 3, payload_for(len(written), a)
                    assert writer.write(kind, payload) == len(written)
                    written.append((kind, payload))
                    model.write(a)
                continue
            cursor = cursors[a]
            for _ in range(b):
                expected = cursor.next_seq
                item = cursor.next(copy=expected % 2 == 0)
                if item is None:
                    assert expected == len(written)
                    break
                if isinstance(item, Gap):
                    assert item.reason is GapReason.OVERRUN
                    assert item.first_seq == expected
                    assert item.length >= 1
                    assert not any(model.intact(seq) for seq in range(expected, expected + item.length))
                    assert expected + item.length == model.oldest_intact_from(expected)
                    missed[a] += item.length
                else:
                    assert item.seq == expected
                    assert model.intact(item.seq)
                    assert (item.kind, bytes(item.payload)) == written[item.seq]
                    assert cursor.intact(item)
                    del item
                assert cursor.next_seq > expected
        for cursor, count in zip(cursors, missed, strict=True):
            assert (cursor.missed, cursor.corrupt) == (count, 0)
    finally:
        ring.close()
        Ring.unlink(name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_scribbles_anywhere_never_crash_a_reader_nor_pass_for_records(data: st.DataObject) -> None:
    capacity, slots = 2048, 16
    name = ring_name()
    ring = Ring.create(name, capacity, index_slots=slots, max_readers=2)
    try:
        writer = RingWriter(ring)
        cursors = [RingCursor(ring, 0, start=0), RingCursor(ring, 1, start=0)]
        area = ring.data_offset + capacity - ring.index_offset
        written: list[bytes] = []
        write = st.tuples(st.just("write"), st.integers(0, capacity // 4), st.just(b""))
        read = st.tuples(st.just("read"), st.integers(0, 1), st.just(b""))
        hit = st.tuples(st.just("scribble"), st.integers(0, area - 1), st.binary(min_size=1, max_size=16))
        for op, a, junk in data.draw(st.lists(st.one_of(write, read, hit), max_size=80)):
            if op == "write":
                written.append(payload_for(len(written), a))
                writer.write(RecordKind.MEDIA, written[-1])
            elif op == "scribble":
                offset = ring.index_offset + a
                scribble(ring, offset, junk[: ring.data_offset + capacity - offset])
            else:
                cursor = cursors[a]
                while (item := cursor.next(copy=bool(a))) is not None:
                    if isinstance(item, Record):
                        assert bytes(item.payload) == written[item.seq]
                        assert cursor.next_seq == item.seq + 1
                        del item
                    else:
                        assert cursor.next_seq == item.first_seq + item.length
                assert cursor.next_seq == len(written)
    finally:
        ring.close()
        Ring.unlink(name)


# --- corruption ------------------------------------------------------------------------------------------


# Offsets inside a record: check 0, magic 4, seq 8, length 16, kind 20, reserved 22, payload 24.
@pytest.mark.parametrize(
    ("where", "junk"),
    [
        (HEADER_SIZE + 50, b"\xff"),  # payload
        (0, b"\x00\x00\x00\x00"),  # check
        (4, b"XXXX"),  # magic
        (8, (7).to_bytes(8, "little")),  # seq
        (16, (0xFFFF).to_bytes(4, "little")),  # length, beyond the ring
        (16, (10).to_bytes(4, "little")),  # length, shorter
        (20, b"\x09"),  # kind
        (22, b"\x01"),  # reserved
    ],
)
@pytest.mark.parametrize("copy", [False, True])
def test_a_corrupt_record_is_skipped_and_counted(
    make_ring: Callable[..., Ring], where: int, junk: bytes, copy: bool
) -> None:
    ring = make_ring(4096)
    writer = RingWriter(ring)
    cursor = RingCursor(ring, 0)
    positions = []
    for seq in range(3):
        positions.append(writer._position)  # where record `seq` lies, to scribble on it
        writer.write(RecordKind.MEDIA, payload_for(seq, 100))
    scribble(ring, ring.data_offset + positions[1] + where, junk)
    items = [cursor.next(copy=copy) for _ in range(4)]
    assert isinstance(items[0], Record)
    assert items[0].seq == 0
    assert items[1] == Gap(1, 1, GapReason.CORRUPT)
    assert isinstance(items[2], Record)
    assert (items[2].seq, bytes(items[2].payload)) == (2, payload_for(2, 100))
    assert items[3] is None
    assert (cursor.corrupt, cursor.missed) == (1, 0)
    assert ring.stats().readers[0].corrupt == 1
    del items


def test_a_scribbled_index_entry_is_a_corrupt_record(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring(4096, index_slots=16)
    writer = RingWriter(ring)
    cursor = RingCursor(ring, 0)
    for seq in range(3):
        writer.write(RecordKind.MEDIA, payload_for(seq, 40))
    scribble(ring, ring.index_offset + 8, (1 << 60).to_bytes(8, "little"))
    items = [cursor.next(), cursor.next(), cursor.next(), cursor.next()]
    assert [item.seq if isinstance(item, Record) else item for item in items] == [
        0,
        Gap(1, 1, GapReason.CORRUPT),
        2,
        None,
    ]
    del items


# --- wake-ups ---------------------------------------------------------------------------------------------


def test_the_writer_signals_only_readers_that_flagged_themselves_idle(make_ring: Callable[..., Ring]) -> None:
    ring = make_ring()
    wakeup = Wakeup()
    try:
        writer = RingWriter(ring, {0: wakeup.fd})
        cursor = RingCursor(ring, 0)
        writer.write(RecordKind.MEDIA, b"busy reader")
        assert wakeup.drain() == 0
        assert go_idle([cursor]) is False, "a record is waiting: the reader must read on"
        assert isinstance(cursor.next(), Record)
        assert go_idle([cursor]) is True
        writer.write(RecordKind.MEDIA, b"wake up")
        writer.write(RecordKind.MEDIA, b"already woken")
        assert wakeup.drain() == 1
        assert not ring.stats().readers[0].idle
    finally:
        wakeup.close()


async def test_an_idle_reader_wakes_when_the_writer_writes(make_ring: Callable[..., Ring]) -> None:
    rings = [make_ring(), make_ring()]
    wakeup = Wakeup()
    writers = [RingWriter(ring, {1: wakeup.fd}) for ring in rings]
    cursors = [RingCursor(ring, 1) for ring in rings]
    seen: list[tuple[int, int, bytes]] = []
    arrived = asyncio.Event()

    def on_item(cursor: RingCursor, item: Record | Gap) -> None:
        assert isinstance(item, Record)
        seen.append((cursors.index(cursor), item.seq, bytes(item.payload)))
        arrived.set()

    reader = RingReader(cursors, wakeup, on_item, budget=2)
    reader.start()
    try:
        for round_ in range(3):
            await asyncio.sleep(0)  # one loop pass: the reader finds nothing and flags itself idle
            assert all(stats.readers[0].idle for stats in (ring.stats() for ring in rings))
            arrived.clear()
            writers[round_ % 2].write(RecordKind.MEDIA, b"ping %d" % round_)
            await asyncio.wait_for(arrived.wait(), DEADLINE_S)
        for seq in range(5):
            writers[0].write(RecordKind.MEDIA, payload_for(seq, 3))
        while len(seen) < 8:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), DEADLINE_S)
    finally:
        reader.close()
        wakeup.close()
    assert seen[:3] == [(0, 0, b"ping 0"), (1, 0, b"ping 1"), (0, 1, b"ping 2")]
    assert seen[3:] == [(0, 2 + seq, payload_for(seq, 3)) for seq in range(5)]


# --- processes --------------------------------------------------------------------------------------------

WRITER_CHILD = """
from darktower.workers.ring import Ring, RingWriter, RecordKind
ring = Ring.attach(name)
writer = RingWriter(ring, {0: wakeup.fd})
for seq in range(count):
    size = (seq * 37) % 1200
    writer.write(RecordKind.MEDIA, (seq.to_bytes(8, "little") * (size // 8 + 1))[:size])
writer.write(RecordKind.CONTROL, b"done")
ring.close()
"""


@pytest.mark.parametrize(
    ("capacity", "copy"),
    [(1 << 22, False), (1 << 14, True)],
    ids=["roomy-zero-copy", "overrun-copies"],
)
async def test_a_reader_follows_a_writer_in_another_process(
    make_ring: Callable[..., Ring], capacity: int, copy: bool
) -> None:
    """A zero-copy reader must consume each record before the writer laps it; in a small ring it copies."""
    count = 3000
    ring = make_ring(capacity)
    wakeup = Wakeup()
    cursor = RingCursor(ring, 0)
    done = asyncio.Event()
    received: list[int] = []
    lost: list[int] = []

    def on_item(_: RingCursor, item: Record | Gap) -> None:
        if isinstance(item, Gap):
            lost.extend(range(item.first_seq, item.first_seq + item.length))
        elif item.kind == RecordKind.CONTROL:
            assert bytes(item.payload) == b"done"
            done.set()
        else:
            assert bytes(item.payload) == payload_for(item.seq, (item.seq * 37) % 1200)
            received.append(item.seq)

    reader = RingReader([cursor], wakeup, on_item, copy=copy)
    reader.start()
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=exec, args=(WRITER_CHILD, {"name": ring.name, "wakeup": wakeup, "count": count})
    )
    try:
        child.start()
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.to_thread(child.join, DEADLINE_S)
    finally:
        reader.close()
        wakeup.close()
    assert child.exitcode == 0
    assert sorted(received + lost) == list(range(count))
    assert received == sorted(received)
    assert cursor.missed == len(lost)
    if not copy:
        assert lost == []
