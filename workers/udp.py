"""`DatagramWriter`: writes a connection's outgoing QUIC datagrams, batching with UDP GSO where it can.

A video frame to one subscriber leaves aioquic as a run of datagrams of the connection's full size (the last
one shorter) to one address. On Linux such a run goes out in one `sendmsg` with a `UDP_SEGMENT` control
message: the kernel cuts it into the same datagrams, so the receiver sees no difference, and the sender pays
one system call instead of one per datagram. Anything else (one datagram, mixed sizes, another address, no
GSO in the kernel, a full socket buffer) goes through the event loop's transport as usual.

The writer sends on a duplicate of the transport's socket; it falls back to the transport for good on the
first error other than a full buffer (a kernel or interface without GSO answers EIO or EINVAL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Final

from aioquic.quic.connection import NetworkAddress

log = logging.getLogger(__name__)

UDP_SEGMENT: Final = 103
"""Linux's socket option (include/uapi/linux/udp.h); Python's socket module does not name it."""
_MAX_SEGMENTS: Final = 64
"""UDP_MAX_SEGMENTS in the kernel."""
_MAX_BYTES: Final = 65000
"""Below the largest UDP payload of IPv4 (65,507 bytes) and IPv6."""


class DatagramWriter:
    """Sends datagrams for every connection on one UDP socket."""

    __slots__ = ("_buffered", "_gso", "_transport")

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport
        self._buffered: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
        """What the transport still holds: the writer goes around it only when that is nothing."""
        self._gso = _gso_socket(transport) if self._buffered is not None else None

    @property
    def gso(self) -> bool:
        """Whether runs of same-size datagrams are sent with one system call."""
        return self._gso is not None

    def send(self, datagrams: Sequence[tuple[bytes, NetworkAddress]]) -> None:
        """Sends `datagrams` in order (what aioquic's `datagrams_to_send` returns)."""
        count = len(datagrams)
        if count == 1 or self._gso is None:
            sendto = self._transport.sendto
            for data, addr in datagrams:
                sendto(data, addr)
            return
        start = 0
        while start < count:
            end = run_end(datagrams, start)
            if end - start == 1:
                self._transport.sendto(*datagrams[start])
            else:
                self._send_run(datagrams[start:end])
            start = end

    def close(self) -> None:
        if self._gso is not None:
            self._gso.close()
            self._gso = None

    def _send_run(self, run: Sequence[tuple[bytes, NetworkAddress]]) -> None:
        """One sendmsg for the run; the transport takes it when the socket is busy or GSO fails."""
        gso = self._gso
        if gso is not None and self._buffered is not None and not self._buffered():
            segment = len(run[0][0])
            try:
                gso.sendmsg(
                    [data for data, _ in run],
                    [(socket.SOL_UDP, UDP_SEGMENT, segment.to_bytes(2, sys.byteorder))],
                    0,
                    run[0][1],
                )
            except BlockingIOError:
                pass
            except OSError as exc:
                log.info("UDP GSO disabled: %s", exc)
                self.close()
            else:
                return
        sendto = self._transport.sendto
        for data, addr in run:
            sendto(data, addr)


def run_end(datagrams: Sequence[tuple[bytes, NetworkAddress]], start: int) -> int:
    """End of the longest run from `start` that one GSO send can carry: one address, datagrams of the first
    one's size except the last, which may be shorter, at most 64 of them and 65,000 bytes."""
    data, addr = datagrams[start]
    segment = len(data)
    total = segment
    end = start + 1
    limit = min(len(datagrams), start + _MAX_SEGMENTS)
    while end < limit:
        data, other = datagrams[end]
        size = len(data)
        if other != addr or size > segment or total + size > _MAX_BYTES:
            break
        total += size
        end += 1
        if size < segment:
            break
    return end


def _gso_socket(transport: asyncio.DatagramTransport) -> socket.socket | None:
    """A duplicate of the transport's socket when the kernel offers UDP GSO on it, else None."""
    if not sys.platform.startswith("linux"):
        return None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    duplicate = socket.socket(fileno=os.dup(raw.fileno()))
    try:
        duplicate.getsockopt(socket.SOL_UDP, UDP_SEGMENT)
    except OSError:
        duplicate.close()
        return None
    return duplicate  # non-blocking: it shares the open file with the loop's socket
