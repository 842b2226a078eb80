"""Worker connection IDs: the encoding, and an aioquic server connection that issues only such CIDs."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionIdIssued, HandshakeCompleted, QuicEvent, StreamDataReceived
from hypothesis import given
from hypothesis import strategies as st

from darktower.core.certs import CertificateStore, ServingCertificate, utcnow
from darktower.workers.cid import (
    CID_LENGTH,
    CID_MARKER,
    MAX_WORKERS,
    ConnectionIdError,
    WorkerCidConnection,
    cid_worker,
    encode_cid,
    issue_worker_cids,
    new_cid,
)

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
ALPN = ["darktower-cid-test"]

indices = st.integers(min_value=0, max_value=MAX_WORKERS - 1)
randoms = st.binary(min_size=CID_LENGTH - 2, max_size=CID_LENGTH - 2)


@given(index=indices, random=randoms)
def test_a_cid_names_its_worker_and_keeps_its_random_part(index: int, random: bytes) -> None:
    cid = encode_cid(index, random)
    assert len(cid) == CID_LENGTH
    assert cid_worker(cid) == index
    assert cid[2:] == random


@given(data=st.binary(max_size=24))
def test_only_cids_of_our_length_and_marker_name_a_worker(data: bytes) -> None:
    ours = len(data) == CID_LENGTH and data[0] == CID_MARKER
    assert (cid_worker(data) is not None) == ours
    if ours:
        assert cid_worker(data) == data[1]


@given(index=st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_WORKERS)), random=randoms)
def test_an_index_outside_one_byte_is_refused(index: int, random: bytes) -> None:
    with pytest.raises(ConnectionIdError, match="worker index"):
        encode_cid(index, random)


@given(index=indices, random=st.binary(max_size=12).filter(lambda b: len(b) != CID_LENGTH - 2))
def test_a_random_part_of_the_wrong_size_is_refused(index: int, random: bytes) -> None:
    with pytest.raises(ConnectionIdError, match="random bytes"):
        encode_cid(index, random)


def test_fresh_cids_differ() -> None:
    cids = {new_cid(7) for _ in range(100)}
    assert len(cids) == 100
    assert {cid_worker(cid) for cid in cids} == {7}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServingCertificate:
    directory: Path = tmp_path_factory.mktemp("tls")
    return CertificateStore(directory, timedelta(days=10), timedelta(days=3)).rotate(utcnow())


def server_configuration(certificate: ServingCertificate) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=ALPN)
    configuration.load_cert_chain(certificate.cert_path, certificate.key_path)
    return configuration


def client_connection() -> QuicConnection:
    client = QuicConnection(
        configuration=QuicConfiguration(is_client=True, alpn_protocols=ALPN, verify_mode=ssl.CERT_NONE)
    )
    client.connect(SERVER_ADDR, now=0.0)
    return client


class Link:
    """A client and a worker-CID server connection exchanging datagrams in memory; the server's events kept."""

    def __init__(self, certificate: ServingCertificate, index: int) -> None:
        self.client = client_connection()
        plain = QuicConnection(
            configuration=server_configuration(certificate),
            original_destination_connection_id=self.client.original_destination_connection_id,
        )
        self.server = issue_worker_cids(plain, index)
        self.server_events: list[QuicEvent] = []
        self.client_events: list[QuicEvent] = []
        self.now = 0.0

    def exchange(self, rounds: int = 6) -> None:
        for _ in range(rounds):
            self.now += 0.01
            for data, _addr in self.client.datagrams_to_send(now=self.now):
                self.server.receive_datagram(data, CLIENT_ADDR, now=self.now)
            for data, _addr in self.server.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)
            while (event := self.client.next_event()) is not None:
                self.client_events.append(event)

    def client_peer_cids(self) -> list[bytes]:
        """The server CIDs the client knows: the one it uses and those it holds in reserve."""
        return [self.client._peer_cid.cid] + [cid.cid for cid in self.client._peer_cid_available]


def test_every_cid_a_server_connection_issues_names_its_worker(certificate: ServingCertificate) -> None:
    link = Link(certificate, 5)
    assert type(link.server) is WorkerCidConnection
    assert cid_worker(link.server.host_cid) == 5

    link.exchange()

    assert any(isinstance(e, HandshakeCompleted) for e in link.client_events)
    issued = [e.connection_id for e in link.server_events if isinstance(e, ConnectionIdIssued)]
    assert len(issued) >= 1
    known = link.client_peer_cids()
    assert len(known) == len(issued) + 1
    assert {cid_worker(cid) for cid in [*issued, *known]} == {5}


def test_cids_issued_after_the_client_retires_some_still_name_the_worker(
    certificate: ServingCertificate,
) -> None:
    link = Link(certificate, 200)
    link.exchange()
    used = {link.client._peer_cid.cid}
    for round_ in range(12):
        link.client.change_connection_id()
        used.add(link.client._peer_cid.cid)
        stream = link.client.get_next_available_stream_id()
        link.client.send_stream_data(stream, b"round %d" % round_, end_stream=True)
        link.exchange(rounds=3)
    assert len(used) == 13
    received = [e.data for e in link.server_events if isinstance(e, StreamDataReceived)]
    assert received == [b"round %d" % n for n in range(12)]
    issued = [e.connection_id for e in link.server_events if isinstance(e, ConnectionIdIssued)]
    assert len(issued) > 8
    assert {cid_worker(cid) for cid in [*issued, *used, *link.client_peer_cids()]} == {200}


def test_a_client_connection_is_refused() -> None:
    with pytest.raises(ConnectionIdError, match="server connections"):
        issue_worker_cids(client_connection(), 0)


def test_a_configuration_parsing_other_cid_lengths_is_refused(certificate: ServingCertificate) -> None:
    configuration = server_configuration(certificate)
    configuration.connection_id_length = 12
    server = QuicConnection(configuration=configuration, original_destination_connection_id=b"\x01" * 8)
    with pytest.raises(ConnectionIdError, match="12-byte"):
        issue_worker_cids(server, 0)


def test_a_connection_that_has_started_is_refused(certificate: ServingCertificate) -> None:
    client = client_connection()
    server = QuicConnection(
        configuration=server_configuration(certificate),
        original_destination_connection_id=client.original_destination_connection_id,
    )
    for data, _addr in client.datagrams_to_send(now=0.0):
        server.receive_datagram(data, CLIENT_ADDR, now=0.0)
    with pytest.raises(ConnectionIdError, match="before the connection"):
        issue_worker_cids(server, 0)
