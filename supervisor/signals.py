"""Signals as readable bytes, so the supervisor's one loop waits on signals and child exits together.

The C-level handler writes each caught signal's number to a pipe (`signal.set_wakeup_fd`); the Python handler
does nothing. Nothing runs inside a signal handler, so a signal can arrive at any point (during a fork, a
print, a wait) without reentrancy problems, and none is lost: its byte waits in the pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Self

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Installed so the interpreter catches the signal; the wakeup byte is what the loop acts on."""


class SignalQueue:
    def __init__(self, signums: Iterable[signal.Signals]) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous: dict[signal.Signals, _Handler] = {}
        for signum in signums:
            self._previous[signum] = signal.signal(signum, _ignore)

    def fileno(self) -> int:
        """Readable whenever a signal is queued (for select/`multiprocessing.connection.wait`)."""
        return self._read_fd

    def drain(self) -> list[signal.Signals]:
        """The signals caught since the last call, oldest first."""
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read_fd, 512):
                data += chunk
        return [signal.Signals(number) for number in data]

    def close(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
