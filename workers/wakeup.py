"""Waking ring readers: one eventfd per reading worker, and the asyncio adapter that drains its rings.

A worker that reads several rings owns one `Wakeup` (a Linux eventfd) and one `RingReader` for all of them.
Each ring's writer holds that eventfd for the worker's reader slot and writes it only after the worker
flagged itself idle in that ring (`ring.go_idle`), so a busy reader costs the writers nothing and an idle
one sleeps in the event loop instead of polling.

The supervisor creates the eventfds and hands them to the workers it spawns: a `Wakeup` pickles as a
duplicate of its descriptor (multiprocessing's `DupFd`), so it can be passed in a spawned process's
arguments, and a restarted worker receives the same eventfd as its predecessor.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from multiprocessing import reduction
from typing import Any

from darktower.workers.ring import Gap, Record, RingCursor, go_idle


class Wakeup:
    """An eventfd a reader sleeps on and writers signal (non-blocking, close-on-exec)."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if fd is None else fd

    def signal(self) -> None:
        os.eventfd_write(self.fd, 1)

    def drain(self) -> int:
        """Reset the eventfd; the number of signals since the last drain."""
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __reduce__(self) -> tuple[Callable[[Any], Wakeup], tuple[Any]]:
        return _rebuild_wakeup, (reduction.DupFd(self.fd),)


def _rebuild_wakeup(duplicate: Any) -> Wakeup:
    return Wakeup(duplicate.detach())


OnItem = Callable[[RingCursor, Record | Gap], None]
"""Called with the cursor (which ring, which slot) and each record or gap, in ring order."""


class RingReader:
    """Delivers what `cursors` read to `on_item` from the event loop, and sleeps on `wakeup` when all are empty.

    Each pass reads at most `budget` items per cursor before yielding to the loop, so one busy ring cannot
    starve the others or the worker's sockets. With `copy`, payloads are private copies
    (`RingCursor.next(copy=True)`); otherwise they are views that `on_item` must consume before returning.
    """

    def __init__(
        self,
        cursors: Sequence[RingCursor],
        wakeup: Wakeup,
        on_item: OnItem,
        *,
        budget: int = 64,
        copy: bool = False,
    ) -> None:
        self._cursors = tuple(cursors)
        self._wakeup = wakeup
        self._on_item = on_item
        self._budget = budget
        self._copy = copy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None

    @property
    def cursors(self) -> tuple[RingCursor, ...]:
        return self._cursors

    def start(self) -> None:
        """Begin reading on the running loop (what is already waiting is read at once)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._wakeup.fd, self._readable)
        self._schedule()

    def close(self) -> None:
        """Stop reading; the cursors keep their positions and the eventfd stays open."""
        if self._loop is not None:
            self._loop.remove_reader(self._wakeup.fd)
            self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for cursor in self._cursors:
            cursor.set_idle(False)

    def _schedule(self) -> None:
        if self._handle is None and self._loop is not None:
            self._handle = self._loop.call_soon(self._run)

    def _readable(self) -> None:
        self._wakeup.drain()
        if self._handle is None:
            self._run()

    def _run(self) -> None:
        self._handle = None
        cursors = self._cursors
        for cursor in cursors:
            cursor.set_idle(False)
        on_item, budget, copy = self._on_item, self._budget, self._copy
        try:
            for cursor in cursors:
                for _ in range(budget):
                    item = cursor.next(copy=copy)
                    if item is None:
                        break
                    on_item(cursor, item)
        finally:
            if any(cursor.pending() for cursor in cursors) or not go_idle(cursors):
                self._schedule()
