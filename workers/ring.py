"""Single-producer multi-consumer rings of variable-size records in POSIX shared memory.

Each worker writes every frame its publishers send, once, into its own ring; every other worker that hosts
subscribers of the track reads the frame from there. The supervisor creates the segments (`Ring.create`), so
a restarted worker reattaches (`Ring.attach`): a writer resumes the sequence where its predecessor stopped,
a reader starts at the newest record.

The writer never blocks and never waits for readers: it overwrites the oldest records. Each reader keeps its
own position (`RingCursor`); one that fell behind notices by sequence numbers, skips to the oldest record
still intact and reports what it missed as a `Gap`, so its caller can hold each track back until its next
keyframe. A record that fails its checks (a scribble on the memory) is skipped and reported the same way.

Layout (little-endian; 8-byte words, 8-byte aligned):

    control  8 KiB    geometry; the writer's cursors W, RSEQ, RPOS; one idle byte per reader slot; one
                      64-byte line of statistics per reader slot
    index    8 x K    index[seq % K] = position of record seq. Positions count bytes since the ring was
                      created and never wrap; the offset in the data area is position % capacity.
    data     C bytes  records, each contiguous: a 24-byte header, the payload, padding to 8 bytes. A record
                      that would cross the end of the data area starts at the beginning of the next lap.

Record header: check (CRC-32 of the rest of the header and of the payload), magic, seq (64 bits), payload
length, kind, reserved (0).

Protocol. To write record s at positions [p, e) the writer (1) reserves: RSEQ = s, RPOS = e, (2) writes
index[s % K] = p, the payload and the header, (3) publishes: W = s + 1. A reader reads record s only when
s < W, from index[s % K]; after checking (or copying) it re-reads RSEQ and RPOS: the record was intact
throughout iff RSEQ < s + K (its index slot was not reused) and RPOS <= p + C (no byte of it was
overwritten). An intact record that fails its checks is corrupt; one that is not intact was overrun.

Memory ordering. This relies on x86-64's total store order (stores become visible to other cores in
program order; loads are not reordered with other loads) and on CPython doing each shared-memory access in
C, in statement order, with the 8-byte words read and written through a memoryview cast to "Q" (one aligned
8-byte move, which x86-64 performs atomically). So publishing W after the record, and re-reading RSEQ/RPOS
after reading it, need no fences. The idle handshake (`go_idle`, `RingWriter.write`) is the exception: each
side stores, then loads what the other stored, which TSO may reorder (a store waits in the store buffer
while a later load runs); `_full_fence` orders it. `create` and `attach` refuse other architectures.

Validity of zero-copy records: `RingCursor.next()` returns the payload as a memoryview into the mapping,
checked at that moment. It stays intact until the writer has written about one capacity of bytes (or K
records) more, so the caller must consume it at once (hand it to the transport, which copies) and may
confirm afterwards with `RingCursor.intact`. `next(copy=True)` copies first and checks the copy: its payload
stays valid forever.
"""

from __future__ import annotations

import enum
import mmap
import os
import platform
import struct
import threading
import zlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Final, NamedTuple, Self

import posix_ipc  # type: ignore[import-not-found]

from darktower.workers.errors import WorkerError

_MAGIC: Final = int.from_bytes(b"DTRING01", "little")
_VERSION: Final = 1
_RECORD_MAGIC: Final = int.from_bytes(b"DTRR", "little")
_CONTROL_SIZE: Final = 8192
_MAX_READERS: Final = 64
_TSO_MACHINES: Final = frozenset({"x86_64", "AMD64", "amd64"})

# Control block, as 8-byte word indices: geometry (line 0), the writer's cursors (line 1).
_W_MAGIC, _W_VERSION, _W_CAPACITY, _W_SLOTS, _W_READERS = 0, 1, 2, 3, 4
_W_PUBLISHED, _W_RSEQ, _W_RPOS = 8, 9, 10
_IDLE_OFFSET: Final = 128
"""Byte offset of the idle flags, one byte per reader slot (line 2)."""
_STATS_OFFSET: Final = 192
"""Byte offset of the per-slot statistics lines: next seq, missed, corrupt, overruns, pid."""
_S_NEXT, _S_MISSED, _S_CORRUPT, _S_OVERRUNS, _S_PID = 0, 1, 2, 3, 4
_STATS_WORDS: Final = 8

_HEADER: Final = struct.Struct("<IIQIHH")
"""check, magic, seq, payload length, kind, reserved."""
HEADER_SIZE: Final = _HEADER.size
_CHECKED_FIELDS: Final = struct.Struct("<QIHH")
_CHECK: Final = struct.Struct("<II")

_fence_lock = threading.Lock()


def _full_fence() -> None:
    """A full memory barrier on x86-64.

    CPython exposes no fence; acquiring and releasing a `threading.Lock` runs a locked read-modify-write
    (glibc's semaphore fast path), and every locked instruction is a full barrier on x86-64.
    """
    _fence_lock.acquire()
    _fence_lock.release()


class RingError(WorkerError):
    """A ring cannot be created, attached or used as asked (bad geometry, missing segment, misuse)."""


class RecordKind(enum.IntEnum):
    """What a record carries; the ring stores any 16-bit kind and leaves its meaning to the caller."""

    MEDIA = 1
    """A media frame in the format of docs/FRAME-FORMAT.md."""
    CONTROL = 2
    """A control message between workers."""


class GapReason(enum.Enum):
    OVERRUN = "overrun"
    """The writer overwrote the records before the reader got to them."""
    CORRUPT = "corrupt"
    """The record was intact but failed its checks (header or CRC): the memory was scribbled on."""


class Record(NamedTuple):
    seq: int
    kind: int
    payload: memoryview
    position: int
    """Where the record starts (bytes since the ring was created); `RingCursor.intact` checks against it."""


class Gap(NamedTuple):
    """Records `first_seq` .. `first_seq + length - 1` will never be returned, for `reason`."""

    first_seq: int
    length: int
    reason: GapReason


class ReaderStats(NamedTuple):
    slot: int
    pid: int
    next_seq: int
    lag: int
    missed: int
    corrupt: int
    overruns: int
    idle: bool


class RingStats(NamedTuple):
    name: str
    capacity: int
    next_seq: int
    """The sequence number the writer gives its next record (records written so far)."""
    readers: tuple[ReaderStats, ...]
    """The slots a reader has attached to since the ring was created."""


_unpack_header: Final = _HEADER.unpack_from
_crc32: Final = zlib.crc32
_new_record: Final = tuple.__new__


def _checked_copy(record: memoryview, seq: int) -> tuple[int, memoryview]:
    """(kind, payload) of a copy of `record` (header included), or kind -1 if the copy fails its checks."""
    copied = memoryview(record.tobytes())
    check, magic, found_seq, length, kind, reserved = _HEADER.unpack_from(copied)
    if (
        magic != _RECORD_MAGIC
        or found_seq != seq
        or reserved
        or HEADER_SIZE + length != len(copied)
        or zlib.crc32(copied[8:]) != check
    ):
        return -1, copied
    return kind, copied[HEADER_SIZE:]


def _shm_name(name: str) -> str:
    return "/" + name.lstrip("/")


def _check_machine() -> None:
    if platform.machine() not in _TSO_MACHINES:
        raise RingError(f"shared-memory rings need x86-64 memory ordering, not {platform.machine()}")


def _map(fd: int, size: int) -> mmap.mmap:
    """Map with the page tables filled at once, so no record pays for a page fault on first touch."""
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)


def _index_slots_for(capacity: int) -> int:
    return max(16, 1 << max(0, capacity // 64 - 1).bit_length())


class Ring:
    """One ring's mapping. Create it in the supervisor; attach it in each worker; unlink it at shutdown.

    `close` unmaps; it raises `BufferError` while zero-copy records of this ring are still referenced.
    """

    def __init__(self, name: str, memory: mmap.mmap) -> None:
        self.name = name
        self._mmap = memory
        view = memoryview(memory)
        self._control = view[:_CONTROL_SIZE].cast("Q")
        self.capacity = self._control[_W_CAPACITY]
        self.index_slots = self._control[_W_SLOTS]
        self.max_readers = self._control[_W_READERS]
        index_end = _CONTROL_SIZE + 8 * self.index_slots
        self._idle = view[_IDLE_OFFSET : _IDLE_OFFSET + _MAX_READERS]
        self._idle_words = view[_IDLE_OFFSET : _IDLE_OFFSET + _MAX_READERS].cast("Q")
        self._index = view[_CONTROL_SIZE:index_end].cast("Q")
        self._slot_stats = view[_STATS_OFFSET : _STATS_OFFSET + 8 * _STATS_WORDS * _MAX_READERS].cast("Q")
        self.data = view[index_end : index_end + self.capacity]
        self.data_offset = index_end
        """Byte offset of the data area in the segment (tests use it to scribble on records)."""
        self.index_offset = _CONTROL_SIZE
        self._views = (
            view,
            self._control,
            self._idle,
            self._idle_words,
            self._index,
            self._slot_stats,
            self.data,
        )

    @classmethod
    def create(
        cls, name: str, capacity: int, *, max_readers: int = 16, index_slots: int | None = None
    ) -> Ring:
        """Create the segment `name` holding `capacity` bytes of records; fails if it exists.

        `capacity` is a multiple of 64, at least 1 KiB; a record's payload may be up to a quarter of it.
        `index_slots` (a power of two) bounds how many records the ring keeps however small they are;
        the default is `capacity / 64`.
        """
        _check_machine()
        slots = _index_slots_for(capacity) if index_slots is None else index_slots
        if capacity < 1024 or capacity % 64 or capacity >= 1 << 40:
            raise RingError(f"ring capacity must be a multiple of 64 in [1 KiB, 1 TiB), not {capacity}")
        if slots < 16 or slots & (slots - 1) or slots > 1 << 24:
            raise RingError(f"index slots must be a power of two in [16, 2**24], not {slots}")
        if not 1 <= max_readers <= _MAX_READERS:
            raise RingError(f"a ring has 1 to {_MAX_READERS} reader slots, not {max_readers}")
        size = _CONTROL_SIZE + 8 * slots + capacity
        try:
            shm = posix_ipc.SharedMemory(_shm_name(name), posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.Error as exc:
            raise RingError(f"cannot create ring {name!r}: {exc}") from None
        try:
            memory = _map(shm.fd, size)
        finally:
            shm.close_fd()
        control = memoryview(memory)[:_CONTROL_SIZE].cast("Q")
        control[_W_VERSION] = _VERSION
        control[_W_CAPACITY] = capacity
        control[_W_SLOTS] = slots
        control[_W_READERS] = max_readers
        control[_W_MAGIC] = _MAGIC
        control.release()
        return cls(name, memory)

    @classmethod
    def attach(cls, name: str) -> Ring:
        """Map the existing segment `name`, checking that it is a ring this code understands."""
        _check_machine()
        try:
            shm = posix_ipc.SharedMemory(_shm_name(name))
        except posix_ipc.Error as exc:
            raise RingError(f"cannot attach ring {name!r}: {exc}") from None
        try:
            size = int(shm.size)
            if size < _CONTROL_SIZE:
                raise RingError(f"{name!r} is not a ring: {size} bytes")
            memory = _map(shm.fd, size)
        finally:
            shm.close_fd()
        magic, version, capacity, slots = struct.unpack_from("<4Q", memory)
        if magic != _MAGIC or version != _VERSION or size != _CONTROL_SIZE + 8 * slots + capacity:
            memory.close()
            raise RingError(f"{name!r} is not a version-{_VERSION} ring (or is damaged)")
        return cls(name, memory)

    @staticmethod
    def unlink(name: str) -> bool:
        """Remove the segment `name` (mappings stay valid until closed); False if there was none."""
        try:
            posix_ipc.unlink_shared_memory(_shm_name(name))
        except posix_ipc.ExistentialError:
            return False
        return True

    @property
    def max_payload(self) -> int:
        return self.capacity // 4

    def stats(self) -> RingStats:
        """A snapshot for `darktower status`: the writer's sequence and each attached reader's."""
        next_seq = self._control[_W_PUBLISHED]
        readers = []
        for slot in range(self.max_readers):
            base = slot * _STATS_WORDS
            words = self._slot_stats[base : base + _STATS_WORDS]
            if words[_S_PID]:
                readers.append(
                    ReaderStats(
                        slot=slot,
                        pid=words[_S_PID],
                        next_seq=words[_S_NEXT],
                        lag=max(0, next_seq - words[_S_NEXT]),
                        missed=words[_S_MISSED],
                        corrupt=words[_S_CORRUPT],
                        overruns=words[_S_OVERRUNS],
                        idle=bool(self._idle[slot]),
                    )
                )
            words.release()
        return RingStats(self.name, self.capacity, next_seq, tuple(readers))

    def close(self) -> None:
        for view in reversed(self._views):
            view.release()
        self._mmap.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RingWriter:
    """The one writer of a ring. `wake_fds` maps reader slots to the eventfds their readers sleep on.

    A restarted writer continues its predecessor's sequence (and skips whatever record it left half-written).
    """

    def __init__(self, ring: Ring, wake_fds: Mapping[int, int] | None = None) -> None:
        self._ring = ring
        self._control = ring._control  # noqa: SLF001 - the writer is the ring's other half
        self._index = ring._index  # noqa: SLF001
        self._idle = ring._idle  # noqa: SLF001
        self._idle_words = ring._idle_words  # noqa: SLF001
        self._data = ring.data
        self._capacity = ring.capacity
        self._mask = ring.index_slots - 1
        self._max_payload = ring.max_payload
        self._seq = self._control[_W_PUBLISHED]
        self._position = self._control[_W_RPOS]
        wakes: dict[int, list[tuple[int, int]]] = {}
        for slot, fd in (wake_fds or {}).items():
            if not 0 <= slot < ring.max_readers:
                raise RingError(f"ring {ring.name!r} has no reader slot {slot}")
            wakes.setdefault(slot // 8, []).append((slot, fd))
        self._wakes = tuple((word, tuple(pairs)) for word, pairs in sorted(wakes.items()))

    @property
    def next_seq(self) -> int:
        return self._seq

    def write(self, kind: int, payload: bytes | bytearray | memoryview) -> int:
        """Append one record (payload: a flat bytes-like object) and return its sequence number.

        Wakes, through its eventfd, every reader that flagged itself idle; a busy reader costs nothing.
        """
        length = len(payload)
        if length > self._max_payload:
            raise RingError(f"a record of {length} bytes exceeds this ring's limit of {self._max_payload}")
        if not 0 <= kind <= 0xFFFF:
            raise RingError(f"record kind must fit 16 bits, not {kind}")
        capacity = self._capacity
        size = (HEADER_SIZE + length + 7) & ~7
        start = self._position
        offset = start % capacity
        if offset + size > capacity:
            start += capacity - offset
            offset = 0
        end = start + size
        seq = self._seq
        control = self._control
        control[_W_RSEQ] = seq
        control[_W_RPOS] = end
        self._index[seq & self._mask] = start
        data = self._data
        body = offset + HEADER_SIZE
        data[body : body + length] = payload
        _CHECKED_FIELDS.pack_into(data, offset + 8, seq, length, kind, 0)
        _CHECK.pack_into(data, offset, zlib.crc32(data[offset + 8 : body + length]), _RECORD_MAGIC)
        control[_W_PUBLISHED] = seq + 1
        self._seq = seq + 1
        self._position = end
        if self._wakes:
            self._wake_idle_readers()
        return seq

    def _wake_idle_readers(self) -> None:
        _full_fence()
        idle = self._idle
        for word, pairs in self._wakes:
            if self._idle_words[word]:
                for slot, fd in pairs:
                    if idle[slot]:
                        idle[slot] = 0
                        os.eventfd_write(fd, 1)


class RingCursor:
    """One reader's position in a ring, in reader slot `slot` (one cursor per slot at a time).

    Sans-I/O apart from the shared memory itself: `next` never blocks. `start` is the first sequence to read
    (default: the writer's next one, so only new records are read).
    """

    def __init__(self, ring: Ring, slot: int, *, start: int | None = None) -> None:
        if not 0 <= slot < ring.max_readers:
            raise RingError(f"ring {ring.name!r} has no reader slot {slot}")
        self.ring = ring
        self.slot = slot
        self._control = ring._control  # noqa: SLF001 - the cursor is the ring's other half
        self._index = ring._index  # noqa: SLF001
        self._idle = ring._idle  # noqa: SLF001
        self._data = ring.data
        self._capacity = ring.capacity
        self._slots = ring.index_slots
        self._mask = ring.index_slots - 1
        self._stats = ring._slot_stats  # noqa: SLF001
        self._stat = slot * _STATS_WORDS
        """Index of this slot's first statistics word."""
        published = self._control[_W_PUBLISHED]
        self._seq = published if start is None else min(start, published)
        if self._seq < 0:
            raise RingError(f"a ring's sequence numbers start at 0, not {start}")
        self.missed = self._stats[self._stat + _S_MISSED]
        self.corrupt = self._stats[self._stat + _S_CORRUPT]
        self.overruns = self._stats[self._stat + _S_OVERRUNS]
        self._stats[self._stat + _S_NEXT] = self._seq
        self._stats[self._stat + _S_PID] = os.getpid()
        self._idle[slot] = 0

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def lag(self) -> int:
        """Records written that this reader has not reached yet."""
        return max(0, self._control[_W_PUBLISHED] - self._seq)

    def pending(self) -> bool:
        return self._seq < self._control[_W_PUBLISHED]

    def next(self, *, copy: bool = False) -> Record | Gap | None:
        """The next record, a `Gap` where records were lost, or None when the reader has caught up.

        With `copy`, the payload is a private copy checked after copying; otherwise it is a view into the
        ring, valid as the module docstring says.
        """
        seq = self._seq
        control = self._control
        if seq >= control[_W_PUBLISHED]:
            return None
        capacity = self._capacity
        position = self._index[seq & self._mask]
        offset = position % capacity
        data = self._data
        kind = -1
        payload = data
        if offset <= capacity - HEADER_SIZE:
            check, magic, found_seq, length, kind, reserved = _unpack_header(data, offset)
            end = offset + HEADER_SIZE + length
            if end > capacity:
                kind = -1
            elif copy:
                kind, payload = _checked_copy(data[offset:end], seq)
            elif (
                magic == _RECORD_MAGIC
                and found_seq == seq
                and not reserved
                and _crc32(data[offset + 8 : end]) == check
            ):
                payload = data[offset + HEADER_SIZE : end]
            else:
                kind = -1
        if control[_W_RSEQ] >= seq + self._slots or control[_W_RPOS] > position + capacity:
            return self._recover(seq)
        if kind < 0:
            return self._skip(seq, seq + 1, GapReason.CORRUPT)
        self._seq = seq + 1
        self._stats[self._stat + _S_NEXT] = seq + 1
        return _new_record(Record, (seq, kind, payload, position))

    def intact(self, record: Record) -> bool:
        """Whether the writer has not yet overwritten `record` (call after consuming a zero-copy one)."""
        control = self._control
        return (
            control[_W_RSEQ] < record.seq + self._slots
            and control[_W_RPOS] <= record.position + self._capacity
        )

    def _recover(self, seq: int) -> Gap:
        """Skip from overrun record `seq` to the oldest record still intact."""
        control = self._control
        published = control[_W_PUBLISHED]
        reserved_seq = control[_W_RSEQ]
        floor = control[_W_RPOS] - self._capacity
        low, high = max(seq + 1, reserved_seq - self._slots + 1), published
        index, mask = self._index, self._mask
        while low < high:
            middle = (low + high) // 2
            if index[middle & mask] >= floor:
                high = middle
            else:
                low = middle + 1
        return self._skip(seq, low, GapReason.OVERRUN)

    def _skip(self, seq: int, to: int, reason: GapReason) -> Gap:
        stats, base = self._stats, self._stat
        if reason is GapReason.OVERRUN:
            self.missed += to - seq
            self.overruns += 1
            stats[base + _S_MISSED] = self.missed
            stats[base + _S_OVERRUNS] = self.overruns
        else:
            self.corrupt += to - seq
            stats[base + _S_CORRUPT] = self.corrupt
        self._seq = to
        stats[base + _S_NEXT] = to
        return Gap(seq, to - seq, reason)

    def set_idle(self, idle: bool) -> None:
        self._idle[self.slot] = int(idle)


def go_idle(cursors: Iterable[RingCursor]) -> bool:
    """Flag every cursor idle unless one has records waiting; True when the reader may now sleep.

    After True, each ring's writer signals the reader's eventfd on its next record. After False no flag is
    left set, and the reader should read on.
    """
    cursors = tuple(cursors)
    for cursor in cursors:
        cursor.set_idle(True)
    _full_fence()
    if any(cursor.pending() for cursor in cursors):
        for cursor in cursors:
            cursor.set_idle(False)
        return False
    return True
