"""The heartbeat table: one POSIX shared-memory segment where workers prove they are alive.

The supervisor creates the segment before it spawns anything and unlinks it when it exits. Each worker
writes its slot's heartbeat (a `time.monotonic_ns()` value: CLOCK_MONOTONIC, the same clock in every process
of the machine) and its load from its event loop every `BEAT_INTERVAL_S`; a worker whose loop is stuck, or
whose process is stopped, stops beating, and the supervisor kills and replaces it. `darktower status` reads
the same table, so it needs no connection to the server.

The segment's name is derived from the data directory (`segment_name`), so a server and the status command
pointed at the same directory meet without further configuration. It is created mode 0600: only the
server's user reads it.

Layout: 8-byte little-endian words, a 128-byte header and one 128-byte slot per worker (two cache lines
each, so workers never share one).

    header  magic, version, slots, supervisor pid, supervisor start, supervisor heartbeat,
            heartbeat timeout (ns), reserved...
    slot k  pid, state, start, heartbeat, restarts, connections, meetings, port, ring lag, reserved...

`meetings` counts the meetings whose state machine the worker runs (with several workers: the meetings it
owns); `ring lag` is how many records the worker has yet to read from the other workers' media rings,
summed (0 when it follows none).

Times are monotonic nanoseconds. Every field has one writer at a time: the supervisor writes the header and
a slot's pid, state, start, restarts and port; the worker writes its heartbeat, connections, meetings and
ring lag (the supervisor zeroes them before it starts the worker's process). The one overlap is harmless: a worker
that begins draining writes DRAINING, which the supervisor wrote too if the SIGTERM came from it. Each word is written and read
with one aligned 8-byte access, so no single value is ever torn; a snapshot of several fields is not atomic
as a whole, which is good enough for liveness and for a status display.
"""

from __future__ import annotations

import enum
import hashlib
import mmap
from pathlib import Path
from types import TracebackType
from typing import Final, NamedTuple, Self

import posix_ipc  # type: ignore[import-not-found]

from darktower.workers.errors import WorkerError

BEAT_INTERVAL_S: Final = 0.25
"""How often a worker writes its heartbeat."""

_MAGIC: Final = int.from_bytes(b"DTBEAT01", "little")
_VERSION: Final = 2
_WORDS: Final = 16
"""Words per header and per slot (128 bytes), room to add fields without moving the others."""
_H_MAGIC, _H_VERSION, _H_SLOTS, _H_PID, _H_STARTED, _H_BEAT, _H_TIMEOUT = range(7)
(
    _S_PID,
    _S_STATE,
    _S_STARTED,
    _S_BEAT,
    _S_RESTARTS,
    _S_CONNECTIONS,
    _S_MEETINGS,
    _S_PORT,
    _S_RING_LAG,
) = range(9)
_SLOT_FIELDS: Final = 9
MAX_SLOTS: Final = 4096


class HeartbeatError(WorkerError):
    """The heartbeat table cannot be created, attached or used as asked."""


class NoHeartbeatTableError(HeartbeatError):
    """No table exists under that name: no server runs for that data directory."""


class WorkerState(enum.IntEnum):
    """A slot's state, as the supervisor sees its worker."""

    EMPTY = 0
    """Never started."""
    STARTING = 1
    """Spawned, not yet ready."""
    RUNNING = 2
    DRAINING = 3
    """Told to finish its sessions (SIGTERM) and exit."""
    STOPPING = 4
    """Told to close its sessions now (SIGINT) and exit."""
    RESTARTING = 5
    """Died; waiting out the restart back-off."""
    STOPPED = 6


class WorkerRecord(NamedTuple):
    worker: int
    """The worker's index (its slot)."""
    pid: int
    state: WorkerState
    started_ns: int
    beat_ns: int
    """0 until the worker's first heartbeat."""
    restarts: int
    connections: int
    meetings: int
    port: int
    ring_lag: int


class TableSnapshot(NamedTuple):
    supervisor_pid: int
    supervisor_started_ns: int
    supervisor_beat_ns: int
    heartbeat_timeout_ns: int
    workers: tuple[WorkerRecord, ...]


def segment_name(data_dir: str | Path) -> str:
    """The table's POSIX shared-memory name for a server using `data_dir` (resolved to an absolute path)."""
    digest = hashlib.sha256(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()
    return f"/darktower-{digest[:20]}"


class HeartbeatTable:
    """One process's mapping of the table. `close` unmaps; only the supervisor `unlink`s."""

    def __init__(self, name: str, memory: mmap.mmap) -> None:
        self.name = name
        self._mmap = memory
        self._words = memoryview(memory).cast("Q")
        self.slots = self._words[_H_SLOTS]

    @classmethod
    def create(
        cls, name: str, slots: int, *, supervisor_pid: int, now_ns: int, heartbeat_timeout_ns: int
    ) -> HeartbeatTable:
        """Creates the segment `name` with `slots` empty worker slots; fails if it exists."""
        if not 1 <= slots <= MAX_SLOTS:
            raise HeartbeatError(f"a heartbeat table has 1 to {MAX_SLOTS} slots, not {slots}")
        size = 8 * _WORDS * (1 + slots)
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.Error as exc:
            raise HeartbeatError(f"cannot create the heartbeat table {name}: {exc}") from None
        try:
            memory = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        words = memoryview(memory).cast("Q")
        words[_H_VERSION] = _VERSION
        words[_H_SLOTS] = slots
        words[_H_PID] = supervisor_pid
        words[_H_STARTED] = now_ns
        words[_H_BEAT] = now_ns
        words[_H_TIMEOUT] = heartbeat_timeout_ns
        words[_H_MAGIC] = _MAGIC
        words.release()
        return cls(name, memory)

    @classmethod
    def attach(cls, name: str) -> HeartbeatTable:
        """Maps the existing table `name`; NoHeartbeatTableError when there is none."""
        try:
            shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError:
            raise NoHeartbeatTableError(f"no heartbeat table {name}") from None
        except posix_ipc.Error as exc:
            raise HeartbeatError(f"cannot open the heartbeat table {name}: {exc}") from None
        try:
            size = int(shm.size)
            if size < 8 * _WORDS * 2 or size % (8 * _WORDS):
                raise HeartbeatError(f"{name} is not a heartbeat table ({size} bytes)")
            memory = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        magic, version, slots = memoryview(memory)[:24].cast("Q")
        if magic != _MAGIC or version != _VERSION or size != 8 * _WORDS * (1 + slots):
            memory.close()
            raise HeartbeatError(f"{name} is not a version-{_VERSION} heartbeat table (or is damaged)")
        return cls(name, memory)

    @staticmethod
    def unlink(name: str) -> bool:
        """Removes the segment `name` (mappings stay valid until closed); False if there was none."""
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            return False
        return True

    def _slot(self, index: int) -> int:
        if not 0 <= index < self.slots:
            raise HeartbeatError(f"worker {index} has no slot in a table of {self.slots}")
        return _WORDS * (1 + index)

    # --- the supervisor's side -------------------------------------------------------------------------

    def supervisor_beat(self, now_ns: int) -> None:
        self._words[_H_BEAT] = now_ns

    def worker_spawned(self, index: int, pid: int, now_ns: int, restarts: int) -> None:
        """A new process now serves slot `index`: its predecessor's heartbeat and load are forgotten."""
        base = self._slot(index)
        self._words[base + _S_BEAT] = 0
        self._words[base + _S_CONNECTIONS] = 0
        self._words[base + _S_MEETINGS] = 0
        self._words[base + _S_RING_LAG] = 0
        self._words[base + _S_STARTED] = now_ns
        self._words[base + _S_RESTARTS] = restarts
        self._words[base + _S_PID] = pid
        self._words[base + _S_STATE] = WorkerState.STARTING

    def set_state(self, index: int, state: WorkerState) -> None:
        self._words[self._slot(index) + _S_STATE] = state

    def set_port(self, index: int, port: int) -> None:
        self._words[self._slot(index) + _S_PORT] = port

    def beat_ns(self, index: int) -> int:
        """The worker's last heartbeat; 0 when its current process has not beaten yet."""
        return int(self._words[self._slot(index) + _S_BEAT])

    # --- the worker's side -----------------------------------------------------------------------------

    def beat(self, index: int, now_ns: int, *, connections: int, meetings: int, ring_lag: int) -> None:
        base = self._slot(index)
        self._words[base + _S_CONNECTIONS] = connections
        self._words[base + _S_MEETINGS] = meetings
        self._words[base + _S_RING_LAG] = ring_lag
        self._words[base + _S_BEAT] = now_ns

    # --- readers ---------------------------------------------------------------------------------------

    def snapshot(self) -> TableSnapshot:
        words = self._words
        workers = []
        for index in range(self.slots):
            base = _WORDS * (1 + index)
            pid, state, started, beat, restarts, connections, meetings, port, lag = words[
                base : base + _SLOT_FIELDS
            ]
            workers.append(
                WorkerRecord(
                    index, pid, _state(state), started, beat, restarts, connections, meetings, port, lag
                )
            )
        return TableSnapshot(
            words[_H_PID], words[_H_STARTED], words[_H_BEAT], words[_H_TIMEOUT], tuple(workers)
        )

    def close(self) -> None:
        self._words.release()
        self._mmap.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _state(value: int) -> WorkerState:
    try:
        return WorkerState(value)
    except ValueError:
        raise HeartbeatError(f"a heartbeat slot holds the unknown state {value}") from None
