"""One public UDP port for every worker: an `SO_REUSEPORT` group steered by QUIC connection ID.

The supervisor opens one UDP socket per worker, all bound to the same address and port with `SO_REUSEPORT`,
in worker order, and attaches a classic-BPF reuseport program (`SO_ATTACH_REUSEPORT_CBPF`) to the group. For
each datagram the kernel runs the program on the UDP payload and delivers the datagram to the socket at the
index it returns; a group's order is its bind order, so index k is worker k. The supervisor keeps every
socket open for its whole life: closing one would move the group's last socket into its slot and send other
workers' connections to the wrong process.

What the program computes (`steering_program`), for N workers:

- Short header (first byte & 0x80 == 0): the DCID starts at byte 1 and is one the workers issued
  (`darktower.workers.cid`): the worker is its index byte, modulo N.
- Long header: the DCID length is byte 5 and the DCID starts at byte 6. A DCID of our length with our
  marker was issued by a worker (a Handshake packet, or a client's Initial or 0-RTT sent after the server's
  first Initial, RFC 9000 §7.2): its index byte, modulo N. Any other DCID is a client's random choice for its
  first flight: the DCID's first 32-bit word, modulo N, so every datagram of that flight lands on the same
  worker, which then issues CIDs naming itself.
- A datagram too short for these reads goes to worker 0, which drops it.

Where the program cannot be attached (no `SO_REUSEPORT` or reuseport BPF in the kernel, a sandbox that
forbids it) `open_worker_sockets` falls back to one port per worker, `port + k` (or ephemeral ports when the
configured port is 0), and the control plane hands each joining client one worker's port. It logs which mode
runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from darktower.supervisor.process import SupervisorError
from darktower.workers.cid import CID_LENGTH, CID_MARKER, INDEX_OFFSET, MARKER_OFFSET, MAX_WORKERS

log = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF: Final = 51
"""From <asm-generic/socket.h>; Python's socket module does not name it."""

# Classic BPF opcodes (<linux/filter.h>), combined as the kernel spells them.
_LDB_ABS: Final = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = payload[k]
_LDW_ABS: Final = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = big-endian 32-bit word at payload[k]
_LD_LEN: Final = 0x80  # BPF_LD | BPF_W | BPF_LEN: A = payload length
_MOD_K: Final = 0x94  # BPF_ALU | BPF_MOD | BPF_K: A %= k
_JEQ_K: Final = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K: Final = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K: Final = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_A: Final = 0x16  # BPF_RET | BPF_A
_RET_K: Final = 0x06  # BPF_RET | BPF_K

_LONG_HEADER: Final = 0x80
_SHORT_DCID: Final = 1
_LONG_DCID_LENGTH: Final = 5
_LONG_DCID: Final = 6
_LONG_MIN: Final = _LONG_DCID + 4
"""A long-header datagram must hold at least the first word of its DCID."""
_SHORT_MIN: Final = _SHORT_DCID + INDEX_OFFSET + 1


class SocketSetupError(SupervisorError):
    """The workers' UDP sockets cannot be opened as configured (port in use, too many workers)."""


class SteeringUnavailableError(SupervisorError):
    """This kernel (or sandbox) refuses `SO_REUSEPORT` or a reuseport BPF program."""


class Steering(enum.Enum):
    """How datagrams reach their worker; AUTO asks for REUSEPORT_CBPF and accepts PORT_PER_WORKER."""

    AUTO = "auto"
    REUSEPORT_CBPF = "reuseport-cbpf"
    PORT_PER_WORKER = "port-per-worker"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One `struct sock_filter`; jt/jf are relative forward jumps."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


@dataclass(frozen=True, slots=True)
class _Op:
    code: int
    k: int = 0
    jt: str | None = None
    jf: str | None = None


def _assemble(lines: list[_Op | str]) -> tuple[Instruction, ...]:
    """Resolves label names (the `str` lines) into relative jumps; a missing label is the next instruction."""
    labels: dict[str, int] = {}
    ops: list[_Op] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(ops)
        else:
            ops.append(line)

    def offset(label: str | None, at: int) -> int:
        return 0 if label is None else labels[label] - at - 1

    return tuple(
        Instruction(op.code, offset(op.jt, at), offset(op.jf, at), op.k) for at, op in enumerate(ops)
    )


def _check_workers(workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise SocketSetupError(f"{workers} workers asked for; one node runs 1 to {MAX_WORKERS}")


def steering_program(workers: int) -> tuple[Instruction, ...]:
    """The reuseport program routing QUIC datagrams to `workers` sockets (see the module docstring)."""
    _check_workers(workers)
    return _assemble(
        [
            _Op(_LDB_ABS, 0),
            _Op(_JSET_K, _LONG_HEADER, jt="long"),
            _Op(_LD_LEN),
            _Op(_JGE_K, _SHORT_MIN, jf="too_short"),
            _Op(_LDB_ABS, _SHORT_DCID + INDEX_OFFSET),
            _Op(_MOD_K, workers),
            _Op(_RET_A),
            "long",
            _Op(_LD_LEN),
            _Op(_JGE_K, _LONG_MIN, jf="too_short"),
            _Op(_LDB_ABS, _LONG_DCID_LENGTH),
            _Op(_JEQ_K, CID_LENGTH, jf="hash"),
            _Op(_LDB_ABS, _LONG_DCID + MARKER_OFFSET),
            _Op(_JEQ_K, CID_MARKER, jf="hash"),
            _Op(_LDB_ABS, _LONG_DCID + INDEX_OFFSET),
            _Op(_MOD_K, workers),
            _Op(_RET_A),
            "hash",
            _Op(_LDW_ABS, _LONG_DCID),
            _Op(_MOD_K, workers),
            _Op(_RET_A),
            "too_short",
            _Op(_RET_K, 0),
        ]
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def attach_steering_program(sock: socket.socket, workers: int) -> None:
    """Attaches `steering_program(workers)` to the reuseport group `sock` was bound into.

    Raises SteeringUnavailableError when the kernel refuses it.
    """
    program = steering_program(workers)
    filters = ctypes.create_string_buffer(
        b"".join(struct.pack("=HBBI", op.code, op.jt, op.jf, op.k) for op in program)
    )
    fprog = _SockFprog(len(program), ctypes.addressof(filters))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))
    except OSError as exc:
        raise SteeringUnavailableError(f"the kernel refused the reuseport program: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class WorkerSockets:
    """Worker k's socket is `sockets[k]`; the supervisor keeps them all open while it runs."""

    mode: Steering
    sockets: tuple[socket.socket, ...]

    @property
    def ports(self) -> tuple[int, ...]:
        """Each worker's UDP port: all the same with REUSEPORT_CBPF, one each with PORT_PER_WORKER."""
        return tuple(sock.getsockname()[1] for sock in self.sockets)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def open_worker_sockets(
    host: str, port: int, workers: int, steering: Steering = Steering.AUTO
) -> WorkerSockets:
    """Binds one UDP socket per worker on `host` (`port` 0: an ephemeral one), steered as asked.

    Raises SocketSetupError for a port in use or a worker count out of range, and SteeringUnavailableError
    when REUSEPORT_CBPF is demanded and refused.
    """
    _check_workers(workers)
    family = _family(host)
    if steering is not Steering.PORT_PER_WORKER:
        try:
            opened = WorkerSockets(Steering.REUSEPORT_CBPF, _open_steered_group(family, host, port, workers))
        except SteeringUnavailableError as exc:
            if steering is Steering.REUSEPORT_CBPF:
                raise
            log.warning("one port per worker: %s", exc)
        else:
            log.info(
                "QUIC steering: %s, %d workers on UDP port %d", opened.mode.value, workers, opened.ports[0]
            )
            return opened
    opened = WorkerSockets(Steering.PORT_PER_WORKER, _open_port_per_worker(family, host, port, workers))
    log.info(
        "QUIC steering: %s, workers on UDP ports %s",
        opened.mode.value,
        ", ".join(map(str, opened.ports)),
    )
    return opened


def _family(host: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SocketSetupError(f"cannot listen on host {host!r}: {exc.strerror}") from exc
    return infos[0][0]


def _bind(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SocketSetupError(f"UDP port {port} on {host} is in use") from exc
        raise SocketSetupError(f"cannot bind UDP port {port} on {host}: {exc.strerror}") from exc


@contextlib.contextmanager
def _closed_on_failure() -> Iterator[list[socket.socket]]:
    """A list for sockets being opened: if opening fails part-way, those already open are closed."""
    sockets: list[socket.socket] = []
    try:
        yield sockets
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def _open_steered_group(
    family: socket.AddressFamily, host: str, port: int, workers: int
) -> tuple[socket.socket, ...]:
    # An exclusive bind first: it fails if anyone holds the port, even another reuseport group of this user,
    # which the group's own binds would silently join; with port 0 it picks the port.
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        _bind(probe, host, port)
        port = probe.getsockname()[1]
    with _closed_on_failure() as sockets:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            except OSError as exc:
                raise SteeringUnavailableError(f"SO_REUSEPORT refused: {exc.strerror}") from exc
            _bind(sock, host, port)
        attach_steering_program(sockets[0], workers)
    return tuple(sockets)


def _open_port_per_worker(
    family: socket.AddressFamily, host: str, port: int, workers: int
) -> tuple[socket.socket, ...]:
    if port and port + workers - 1 > 65535:
        raise SocketSetupError(f"ports {port}..{port + workers - 1} do not all exist")
    with _closed_on_failure() as sockets:
        for index in range(workers):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets.append(sock)
            _bind(sock, host, port + index if port else 0)
    return tuple(sockets)
