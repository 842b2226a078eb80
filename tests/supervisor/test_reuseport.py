"""One public port: a reuseport group on 127.0.0.1 steered by the CBPF program, and its fallback.

The kernel is the judge: datagrams go through real sockets, and `expected_worker` (the program's semantics
written in Python) says where each must land.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import selectors
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived
from hypothesis import given, settings
from hypothesis import strategies as st

from darktower.core.certs import CertificateStore, utcnow
from darktower.supervisor.reuseport import (
    SocketSetupError,
    Steering,
    SteeringUnavailableError,
    WorkerSockets,
    attach_steering_program,
    open_worker_sockets,
)
from darktower.workers.cid import (
    CID_LENGTH,
    CID_MARKER,
    MAX_WORKERS,
    cid_worker,
    encode_cid,
    issue_worker_cids,
)

HOST = "127.0.0.1"
QUIC_V1 = b"\x00\x00\x00\x01"
QUIC_V2 = b"\x6b\x33\x43\xcf"
WAIT_S = 5.0


def expected_worker(payload: bytes, workers: int) -> int:
    """Where the steering program sends a datagram with this UDP payload."""
    if payload and not payload[0] & 0x80:
        return payload[2] % workers if len(payload) >= 3 else 0
    if len(payload) < 10:
        return 0
    dcid_length, dcid = payload[5], payload[6:]
    if dcid_length == CID_LENGTH and dcid[0] == CID_MARKER:
        return dcid[1] % workers
    return int.from_bytes(dcid[:4], "big") % workers


def short_header(cid: bytes, rest: bytes = b"protected payload") -> bytes:
    return b"\x40" + cid + rest


def long_header(first: int, dcid: bytes, version: bytes = QUIC_V1) -> bytes:
    scid = b"\x11" * 8
    return bytes([first]) + version + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + b"\x00" * 40


class Group:
    """A worker socket set and a client socket sending to it; tells which worker received each datagram."""

    def __init__(self, sockets: WorkerSockets) -> None:
        self.sockets = sockets
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.selector = selectors.DefaultSelector()
        for index, sock in enumerate(sockets.sockets):
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, index)

    def close(self) -> None:
        self.selector.close()
        self.client.close()
        self.sockets.close()

    def send(self, payload: bytes, worker: int = 0) -> None:
        self.client.sendto(payload, (HOST, self.sockets.ports[worker]))

    def receive(self, count: int) -> list[tuple[int, bytes]]:
        """The next `count` datagrams as (worker, payload), waiting at most WAIT_S for them."""
        got: list[tuple[int, bytes]] = []
        while len(got) < count:
            ready = self.selector.select(timeout=WAIT_S)
            assert ready, f"only {len(got)} of {count} datagrams arrived"
            for key, _ in ready:
                sock = cast("socket.socket", key.fileobj)
                while True:
                    try:
                        got.append((key.data, sock.recv(65536)))
                    except BlockingIOError:
                        break
        assert len(got) == count, f"{len(got) - count} unexpected datagrams"
        return got

    def route(self, payload: bytes) -> int:
        """The worker that received `payload`."""
        self.send(payload)
        [(worker, data)] = self.receive(1)
        assert data == payload
        return worker


@pytest.fixture
def group() -> Iterator[Group]:
    opened = Group(open_worker_sockets(HOST, 0, 3, Steering.REUSEPORT_CBPF))
    yield opened
    opened.close()


def test_the_group_shares_one_port(group: Group) -> None:
    assert group.sockets.mode is Steering.REUSEPORT_CBPF
    assert len(set(group.sockets.ports)) == 1


def test_short_headers_land_on_the_worker_their_cid_names(group: Group) -> None:
    rng = random.Random(3)
    sent = [(worker, short_header(encode_cid(worker, rng.randbytes(6)))) for worker in [0, 1, 2] * 5]
    for _, payload in sent:
        group.send(payload)
    assert sorted(group.receive(len(sent))) == sorted(sent)


def test_an_index_beyond_the_group_wraps_around(group: Group) -> None:
    assert [group.route(short_header(encode_cid(index, b"\x00" * 6))) for index in (3, 4, 5, 255)] == [
        0,
        1,
        2,
        0,
    ]


def test_client_initials_spread_by_their_random_dcid(group: Group) -> None:
    rng = random.Random(11)
    dcids = [rng.randbytes(rng.randint(8, 20)) for _ in range(60)]
    dcids = [dcid for dcid in dcids if dcid[0] != CID_MARKER]
    routes = [group.route(long_header(0xC0, dcid)) for dcid in dcids]
    assert routes == [expected_worker(long_header(0xC0, dcid), 3) for dcid in dcids]
    assert set(routes) == {0, 1, 2}
    assert [group.route(long_header(0xC0, dcid)) for dcid in dcids] == routes, (
        "the same DCID, the same worker"
    )


@pytest.mark.parametrize(
    ("first", "version"),
    [(0xE0, QUIC_V1), (0xF0, QUIC_V2), (0xC0, QUIC_V1), (0xD0, QUIC_V1)],
    ids=["handshake-v1", "handshake-v2", "initial-after-server-initial", "0rtt-after-server-initial"],
)
def test_long_headers_carrying_a_server_cid_land_on_its_worker(
    group: Group, first: int, version: bytes
) -> None:
    for worker in (2, 0, 1):
        assert group.route(long_header(first, encode_cid(worker, b"\xff" * 6), version)) == worker


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x40", b"\x40\xd7", b"\xc0", b"\xc0\x00\x00\x00\x01\x08\xd7\x02\x00", b"\xff" * 9],
    ids=["empty", "short-1", "short-2", "long-1", "long-9", "ones-9"],
)
def test_a_datagram_too_short_to_route_goes_to_worker_0(group: Group, payload: bytes) -> None:
    assert group.route(payload) == 0
    assert group.route(short_header(encode_cid(2, b"\x00" * 6))) == 2, "the group still steers"


quic_like = st.one_of(
    st.binary(max_size=48),
    st.builds(short_header, st.binary(min_size=CID_LENGTH, max_size=CID_LENGTH)),
    st.builds(
        long_header,
        st.sampled_from([0xC0, 0xD0, 0xE0, 0xF0]),
        st.one_of(
            st.binary(max_size=20),
            st.builds(encode_cid, st.integers(0, MAX_WORKERS - 1), st.binary(min_size=6, max_size=6)),
        ),
    ),
)


def test_the_kernel_routes_every_datagram_as_the_model_says(group: Group) -> None:
    @settings(max_examples=200, deadline=None)
    @given(payload=quic_like)
    def check(payload: bytes) -> None:
        assert group.route(payload) == expected_worker(payload, 3)

    check()


def test_closing_a_duplicate_of_a_worker_socket_keeps_the_group_order(group: Group) -> None:
    """A worker process holds a duplicate of its socket; its death must not reorder the group."""
    group.sockets.sockets[1].dup().close()
    assert [group.route(short_header(encode_cid(worker, b"\x00" * 6))) for worker in (0, 1, 2)] == [0, 1, 2]


def test_a_group_of_one_takes_everything() -> None:
    single = Group(open_worker_sockets(HOST, 0, 1))
    try:
        assert single.sockets.mode is Steering.REUSEPORT_CBPF
        assert [single.route(short_header(encode_cid(worker, b"\x00" * 6))) for worker in (0, 7)] == [0, 0]
    finally:
        single.close()


@pytest.mark.parametrize("workers", [0, MAX_WORKERS + 1])
def test_a_worker_count_out_of_range_is_refused(workers: int) -> None:
    with pytest.raises(SocketSetupError, match=f"{workers} workers asked for"):
        open_worker_sockets(HOST, 0, workers)


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuseport"])
def test_a_port_in_use_is_refused_clearly(reuseport: bool) -> None:
    """Even another reuseport group of this user, which a reuseport bind would silently join."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuseport))
        holder.bind((HOST, 0))
        port = holder.getsockname()[1]
        with pytest.raises(SocketSetupError, match=f"UDP port {port} on {HOST} is in use"):
            open_worker_sockets(HOST, port, 2)


def test_a_configured_port_is_shared_by_the_group() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    opened = open_worker_sockets(HOST, port, 2)
    try:
        assert opened.ports == (port, port)
    finally:
        opened.close()


def test_the_kernel_refuses_a_program_outside_a_reuseport_group() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.bind((HOST, 0))
        with pytest.raises(SteeringUnavailableError, match="refused the reuseport program"):
            attach_steering_program(plain, 2)


def test_one_port_per_worker_delivers_each_port_to_its_worker() -> None:
    fallback = Group(open_worker_sockets(HOST, 0, 3, Steering.PORT_PER_WORKER))
    try:
        assert fallback.sockets.mode is Steering.PORT_PER_WORKER
        assert len(set(fallback.sockets.ports)) == 3
        for worker in (2, 0, 1):
            fallback.send(b"\x40" + encode_cid(0, b"\x00" * 6), worker)
            assert [index for index, _ in fallback.receive(1)] == [worker]
    finally:
        fallback.close()


def consecutive_free_ports(count: int) -> int:
    """A port p such that p..p+count-1 were all free just now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((HOST, 0))
            port: int = first.getsockname()[1]
            rest = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count - 1)]
            try:
                for offset, sock in enumerate(rest, start=1):
                    sock.bind((HOST, port + offset))
            except OSError:
                continue
            finally:
                for sock in rest:
                    sock.close()
            return port
    raise AssertionError("no run of free ports")


def test_one_port_per_worker_counts_up_from_the_configured_port() -> None:
    port = consecutive_free_ports(3)
    opened = open_worker_sockets(HOST, port, 3, Steering.PORT_PER_WORKER)
    try:
        assert opened.ports == (port, port + 1, port + 2)
    finally:
        opened.close()


def test_one_port_per_worker_refuses_a_port_in_use_and_releases_the_others() -> None:
    port = consecutive_free_ports(3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, port + 1))
        with pytest.raises(SocketSetupError, match=f"UDP port {port + 1} on {HOST} is in use"):
            open_worker_sockets(HOST, port, 3, Steering.PORT_PER_WORKER)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((HOST, port))


def test_one_port_per_worker_refuses_ports_past_65535() -> None:
    with pytest.raises(SocketSetupError, match="do not all exist"):
        open_worker_sockets(HOST, 65535, 2, Steering.PORT_PER_WORKER)


# A sandbox that forbids reuseport programs: a seccomp filter making setsockopt(..., 51, ...) fail with EPERM,
# installed in a fresh interpreter, which then opens worker sockets as the supervisor would.
_REFUSING_SANDBOX = textwrap.dedent(
    """
    import ctypes, json, logging, platform, struct
    ARCH, SETSOCKOPT = {"x86_64": (0xC000003E, 54), "aarch64": (0xC00000B7, 208)}[platform.machine()]
    program = [
        (0x20, 0, 0, 4), (0x15, 0, 4, ARCH), (0x20, 0, 0, 0), (0x15, 0, 2, SETSOCKOPT),
        (0x20, 0, 0, 32), (0x15, 1, 0, 51), (0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x00050001),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in program))
    class Fprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))
    fprog = Fprog(len(program), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER

    from darktower.supervisor.reuseport import Steering, SteeringUnavailableError, open_worker_sockets
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("darktower.supervisor.reuseport").addHandler(handler)
    logging.getLogger("darktower.supervisor.reuseport").setLevel(logging.INFO)
    auto = open_worker_sockets("127.0.0.1", 0, 3)
    result = {"mode": auto.mode.value, "ports": list(auto.ports), "logs": records}
    auto.close()
    try:
        open_worker_sockets("127.0.0.1", 0, 3, Steering.REUSEPORT_CBPF)
    except SteeringUnavailableError as exc:
        result["demanded"] = str(exc)
    print(json.dumps(result))
    """
)


def test_where_the_kernel_refuses_the_program_auto_falls_back_to_one_port_per_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _REFUSING_SANDBOX], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout)
    assert result["mode"] == "port-per-worker"
    assert len(set(result["ports"])) == 3
    assert result["logs"] == [
        "one port per worker: the kernel refused the reuseport program: Operation not permitted",
        "QUIC steering: port-per-worker, workers on UDP ports " + ", ".join(map(str, result["ports"])),
    ]
    assert result["demanded"] == "the kernel refused the reuseport program: Operation not permitted"


# A real aioquic handshake through the group: two workers, each issuing CIDs that name it.

ALPN = ["darktower-steering-test"]


class CountingServer(QuicServer):
    """aioquic's server, recording the DCID of every datagram the kernel gave this worker."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.short_dcids: list[bytes] = []
        self.long_dcids: list[bytes] = []

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        payload = cast("bytes", data)
        if payload[0] & 0x80:
            self.long_dcids.append(payload[6 : 6 + payload[5]])
        else:
            self.short_dcids.append(payload[1 : 1 + CID_LENGTH])
        super().datagram_received(data, addr)


class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, end_stream=event.end_stream)
            self.transmit()


def worker_protocol(index: int) -> Callable[..., Echo]:
    def create(quic: QuicConnection, stream_handler: QuicStreamHandler | None = None) -> Echo:
        return Echo(issue_worker_cids(quic, index), stream_handler)

    return create


def first_dcid(dcid: bytes) -> Callable[..., QuicConnectionProtocol]:
    """A client whose first Initial carries `dcid`, so the test knows which worker it hashes to."""

    def create(
        quic: QuicConnection, stream_handler: QuicStreamHandler | None = None
    ) -> QuicConnectionProtocol:
        quic._peer_cid.cid = dcid
        quic._original_destination_connection_id = dcid
        return QuicConnectionProtocol(quic, stream_handler)

    return create


async def echo(client: QuicConnectionProtocol, data: bytes) -> bytes:
    reader, writer = await client.create_stream()
    writer.write(data)
    writer.write_eof()
    return await asyncio.wait_for(reader.read(), WAIT_S)


async def test_a_real_connection_stays_on_the_worker_its_first_initial_hashed_to(tmp_path: Path) -> None:
    certificate = CertificateStore(tmp_path, timedelta(days=10), timedelta(days=3)).rotate(utcnow())
    server_configuration = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    server_configuration.load_cert_chain(certificate.cert_path, certificate.key_path)
    group = open_worker_sockets(HOST, 0, 2, Steering.REUSEPORT_CBPF)
    loop = asyncio.get_running_loop()
    servers: list[CountingServer] = []
    try:
        for index, sock in enumerate(group.sockets):
            _, server = await loop.create_datagram_endpoint(
                functools.partial(
                    CountingServer, configuration=server_configuration, create_protocol=worker_protocol(index)
                ),
                sock=sock,
            )
            servers.append(server)
        first_dcids = {0: bytes.fromhex("0000000212345678"), 1: bytes.fromhex("0000000312345678")}
        for worker, dcid in first_dcids.items():
            client_configuration = QuicConfiguration(
                is_client=True, alpn_protocols=ALPN, verify_mode=ssl.CERT_NONE
            )
            async with connect(
                HOST, group.ports[0], configuration=client_configuration, create_protocol=first_dcid(dcid)
            ) as client:
                assert await echo(client, b"hello %d" % worker) == b"hello %d" % worker
                quic = client._quic
                handshake_cid = quic._peer_cid.cid
                known = [handshake_cid, *(cid.cid for cid in quic._peer_cid_available)]
                assert len(known) > 1
                assert {cid_worker(cid) for cid in known} == {worker}
                quic.change_connection_id()
                assert quic._peer_cid.cid != handshake_cid
                assert await echo(client, b"again %d" % worker) == b"again %d" % worker
        for index, server in enumerate(servers):
            assert first_dcids[index] in server.long_dcids
            assert first_dcids[1 - index] not in server.long_dcids
            assert {dcid for dcid in server.long_dcids if dcid != first_dcids[index]} <= {
                dcid for dcid in server.long_dcids if cid_worker(dcid) == index
            }
            assert len(set(server.short_dcids)) >= 2, "the handshake CID and the one switched to"
            assert {cid_worker(dcid) for dcid in server.short_dcids} == {index}
    finally:
        for server in servers:
            server.close()
        group.close()
