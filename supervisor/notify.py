"""systemd's notification protocol (`sd_notify`), spoken directly: no libsystemd.

Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, an AF_UNIX datagram socket (a path, or an abstract name
written `@name`), and with `WatchdogSec=` also `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, the process it
watches). The service sends newline-separated `KEY=value` assignments in one datagram: `READY=1` once it
serves, `RELOADING=1` (with `MONOTONIC_USEC`, as systemd 253+ wants) then `READY=1` around a reload,
`STOPPING=1` when it begins to stop, and `WATCHDOG=1` more often than `$WATCHDOG_USEC`, else systemd kills
and (with `Restart=on-failure`) restarts it.

`SystemdNotifier.from_environment` takes these variables out of the environment, so the children the
supervisor spawns do not inherit them and cannot speak for it. Without `$NOTIFY_SOCKET` every call is a no-op.
A notification that cannot be delivered is logged and dropped: systemd's absence must not stop the server.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Final

log = logging.getLogger(__name__)

_VARIABLES: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        """`address` as in `$NOTIFY_SOCKET` (None: not under systemd); `watchdog_usec` from `$WATCHDOG_USEC`."""
        self._address = "\0" + address[1:] if address and address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            self._socket = socket.socket(socket.AF_UNIX, kind)
        self.watchdog_interval_s = watchdog_usec / 2e6 if watchdog_usec and self._socket else None
        """How often to send `WATCHDOG=1`: half systemd's timeout, as sd_watchdog_enabled(3) advises."""

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> SystemdNotifier:
        """Reads and removes `$NOTIFY_SOCKET`, `$WATCHDOG_USEC`, `$WATCHDOG_PID`.

        The watchdog applies only when `$WATCHDOG_PID` is unset or names this process.
        """
        address, usec, pid = (environ.pop(name, None) for name in _VARIABLES)
        watchdog_usec: int | None = None
        if usec and (not pid or pid == str(os.getpid())):
            try:
                watchdog_usec = int(usec)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return cls(address or None, watchdog_usec if watchdog_usec and watchdog_usec > 0 else None)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> bool:
        """Sends the `KEY=value` lines in one datagram; False when not under systemd or not delivered."""
        if self._socket is None or self._address is None:
            return False
        try:
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self._address.replace("\0", "@"), exc.strerror)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
