"""`ClusterLink`: one worker's rings, its wake-up pipe, and its readers of every other worker's rings.

Each worker k writes two rings, named after the server's data directory and k: a control ring
(`CONTROL_CAPACITY`) and a media ring (`media_capacity`). The first process of worker k creates them; a
restarted worker k re-attaches them (the writer resumes the sequence, so readers see no discontinuity). Each
worker reads every other worker's rings in reader slot = its own index, starting at the newest record when
it attaches (what was written before was not for this incarnation). A peer whose rings do not exist yet
(it has not started) is attached on a later try, every `ATTACH_RETRY_S`.

Wake-ups: one named FIFO per worker in `<data_dir>/cluster/`, opened read-write and non-blocking by its
reader and by every writer (so opening never blocks and a write never meets a closed pipe). A ring's writer
writes the reader's FIFO only after that reader flagged itself idle (`darktower.workers.wakeup`), one
8-byte word per idle period, so the pipe cannot fill up even behind a dead reader.

The rings outlive the workers; `unlink_rings` removes them when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from darktower.workers.heartbeat import segment_name
from darktower.workers.ring import Gap, Record, RecordKind, Ring, RingCursor, RingError, RingWriter
from darktower.workers.wakeup import RingReader, Wakeup

log = logging.getLogger(__name__)

CONTROL_CAPACITY: Final = 4 * 1024 * 1024
MEDIA_CAPACITY: Final = 16 * 1024 * 1024
ATTACH_RETRY_S: Final = 0.1
_RING_KINDS: Final = ("control", "media")

OnRecord = Callable[[int, RecordKind, Record | Gap, RingCursor], None]
"""(writer index, which ring, what was read, the cursor that read it)."""


def ring_name(data_dir: str, worker: int, kind: str) -> str:
    return f"{segment_name(data_dir)}-{kind}-{worker}"


def media_capacity(max_frame_payload: int) -> int:
    """Room for at least four of the largest frames (a record may be a quarter of a ring), 16 MiB at least."""
    needed = 4 * (max_frame_payload + 256)
    return max(MEDIA_CAPACITY, (needed + 63) // 64 * 64)


def unlink_rings(data_dir: str, workers: int) -> int:
    """Removes every worker's rings of the server using `data_dir`; how many existed."""
    return sum(Ring.unlink(ring_name(data_dir, k, kind)) for k in range(workers) for kind in _RING_KINDS)


def _open_own(name: str, capacity: int, readers: int) -> Ring:
    """This worker's ring: re-attached if a predecessor created it with this geometry, else created."""
    try:
        return Ring.create(name, capacity, max_readers=readers)
    except RingError:
        pass
    ring = Ring.attach(name)
    if ring.capacity == capacity and ring.max_readers >= readers:
        return ring
    ring.close()
    Ring.unlink(name)
    return Ring.create(name, capacity, max_readers=readers)


def open_fifo(path: Path) -> int:
    """The FIFO at `path` (made if missing), open read-write and non-blocking."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise RingError(f"{path} is not a FIFO")
    return fd


class ClusterLink:
    def __init__(
        self, data_dir: str, index: int, workers: int, max_frame_payload: int, on_record: OnRecord
    ) -> None:
        self.index = index
        self._data_dir = data_dir
        self._workers = workers
        self._on_record = on_record
        wake_dir = Path(data_dir) / "cluster"
        wake_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._wake_fds = {k: open_fifo(wake_dir / f"wake-{k}") for k in range(workers)}
        self._wakeup = Wakeup(self._wake_fds[index])
        peers = {k: fd for k, fd in self._wake_fds.items() if k != index}
        self._own = [
            _open_own(ring_name(data_dir, index, "control"), CONTROL_CAPACITY, workers),
            _open_own(ring_name(data_dir, index, "media"), media_capacity(max_frame_payload), workers),
        ]
        self._control = RingWriter(self._own[0], peers)
        self._media = RingWriter(self._own[1], peers)
        self.max_media_record = self._own[1].max_payload
        self._peer_rings: dict[int, list[Ring]] = {}
        self._cursors: dict[str, tuple[int, RecordKind]] = {}
        self._reader: RingReader | None = None
        self._attacher: asyncio.Task[None] | None = None
        self._wakeup.drain()

    # --- writing -------------------------------------------------------------------------------------

    def write_control(self, data: bytes) -> None:
        self._control.write(RecordKind.CONTROL, data)

    def write_media(self, record: bytes) -> None:
        self._media.write(RecordKind.MEDIA, record)

    # --- reading -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Attach the peers that exist now and read them from the running loop; retry the others."""
        self._attach_peers()
        if len(self._peer_rings) < self._workers - 1:
            self._attacher = asyncio.create_task(self._attach_later())

    @property
    def attached(self) -> int:
        """Peers whose rings this worker reads."""
        return len(self._peer_rings)

    def _attach_peers(self) -> None:
        attached = False
        for peer in range(self._workers):
            if peer == self.index or peer in self._peer_rings:
                continue
            try:
                control = Ring.attach(ring_name(self._data_dir, peer, "control"))
            except RingError:
                continue
            try:
                media = Ring.attach(ring_name(self._data_dir, peer, "media"))
            except RingError:
                control.close()
                continue
            self._peer_rings[peer] = [control, media]
            attached = True
        if attached:
            self._restart_reader()

    def _restart_reader(self) -> None:
        old = self._reader
        cursors: list[RingCursor] = []
        if old is not None:
            old.close()
            cursors = list(old.cursors)
        known = {cursor.ring.name for cursor in cursors}
        for peer, rings in self._peer_rings.items():
            for ring, kind in zip(rings, (RecordKind.CONTROL, RecordKind.MEDIA), strict=True):
                if ring.name not in known:
                    cursors.append(RingCursor(ring, self.index))
                    self._cursors[ring.name] = (peer, kind)
        self._reader = RingReader(cursors, self._wakeup, self._item)
        self._reader.start()

    async def _attach_later(self) -> None:
        while len(self._peer_rings) < self._workers - 1:
            await asyncio.sleep(ATTACH_RETRY_S)
            self._attach_peers()
        log.info("reading the rings of all %d other workers", self._workers - 1, extra={"worker": self.index})

    def _item(self, cursor: RingCursor, item: Record | Gap) -> None:
        peer, kind = self._cursors[cursor.ring.name]
        self._on_record(peer, kind, item, cursor)

    def lag(self) -> int:
        """Records written by peers that this worker has not read yet."""
        return sum(c.lag for c in self._reader.cursors) if self._reader is not None else 0

    def close(self) -> None:
        if self._attacher is not None:
            self._attacher.cancel()
            self._attacher = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for fd in self._wake_fds.values():
            os.close(fd)
        self._wake_fds = {}
