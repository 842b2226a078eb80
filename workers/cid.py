"""Server-issued QUIC connection IDs that name the worker owning the connection.

Every worker of a node listens on the same UDP port; the kernel picks the worker for each datagram with the
supervisor's reuseport program (`darktower.supervisor.reuseport`), which reads the destination connection ID.
For that to work, every connection ID a worker issues says which worker it is:

    byte 0      CID_MARKER    tells our CIDs from a client's random Initial DCID of the same length
    byte 1      worker index  0..255
    bytes 2..7  random        48 bits, fresh per CID

The marker and the index are in the clear, like the server ID of QUIC-LB (draft-ietf-quic-load-balancers):
an observer learns which worker holds a connection, nothing that links one connection's CIDs beyond that.
A client DCID that happens to look like ours (1 in 256 of 8-byte ones) is routed by its index byte, which
is as deterministic as the hash it would otherwise get, so nothing breaks.

aioquic 1.7.2 has no setting for how CIDs are made: `QuicConnection` draws them from `os.urandom` in its
constructor (the first one, also the handshake's source CID) and in `_replenish_connection_ids` (those sent in
NEW_CONNECTION_ID). `QuicServer` constructs `QuicConnection` itself, with no factory, so a subclass cannot be
injected without copying its `datagram_received` (version negotiation, retry, routing). The first point where
our code meets a new server connection is the `create_protocol` callback, before the connection has seen a
datagram; `issue_worker_cids` is called there: it replaces the first CID and re-classes the connection as
`WorkerCidConnection`, whose replenishing lets aioquic do its bookkeeping and then rewrites the CIDs it just
added. This reads and writes private aioquic fields and is re-checked at every aioquic upgrade.
"""

from __future__ import annotations

import os
from typing import Final

from aioquic.quic.connection import QuicConnection, QuicConnectionState

from darktower.workers.errors import WorkerError

CID_LENGTH: Final = 8
"""Bytes in every CID a worker issues; aioquic's default `QuicConfiguration.connection_id_length`."""
CID_MARKER: Final = 0xD7
MARKER_OFFSET: Final = 0
INDEX_OFFSET: Final = 1
MAX_WORKERS: Final = 256
"""One index byte names at most this many workers."""
_RANDOM_LENGTH: Final = CID_LENGTH - 2


class ConnectionIdError(WorkerError):
    """A worker index or connection that cannot carry worker CIDs."""


def encode_cid(index: int, random: bytes) -> bytes:
    """The CID naming worker `index`, with `random` (6 bytes) as its unpredictable part."""
    if not 0 <= index < MAX_WORKERS:
        raise ConnectionIdError(f"worker index {index} is outside 0..{MAX_WORKERS - 1}")
    if len(random) != _RANDOM_LENGTH:
        raise ConnectionIdError(f"a CID needs {_RANDOM_LENGTH} random bytes, got {len(random)}")
    return bytes((CID_MARKER, index)) + random


def new_cid(index: int) -> bytes:
    """A fresh CID naming worker `index`."""
    return encode_cid(index, os.urandom(_RANDOM_LENGTH))


def cid_worker(cid: bytes) -> int | None:
    """The worker a CID names, or None when it is not one of ours (wrong length or marker)."""
    if len(cid) != CID_LENGTH or cid[MARKER_OFFSET] != CID_MARKER:
        return None
    return cid[INDEX_OFFSET]


class WorkerCidConnection(QuicConnection):
    """A server `QuicConnection` whose every issued CID names `worker_index`; made by `issue_worker_cids`."""

    worker_index: int

    def _replenish_connection_ids(self) -> None:
        first_new = self._host_cid_seq
        super()._replenish_connection_ids()
        for connection_id in self._host_cids:
            if connection_id.sequence_number >= first_new:
                connection_id.cid = new_cid(self.worker_index)


def issue_worker_cids(quic: QuicConnection, index: int) -> WorkerCidConnection:
    """Makes a new server connection issue only CIDs naming worker `index`, and returns it.

    Call it from `QuicServer`'s `create_protocol` callback, before the connection receives its first datagram:
    `QuicServer` registers the connection under its host CID only after that callback returns.
    """
    if quic.configuration.is_client:
        raise ConnectionIdError("worker CIDs are for server connections")
    if quic.configuration.connection_id_length != CID_LENGTH:
        raise ConnectionIdError(
            f"worker CIDs are {CID_LENGTH} bytes; the configuration parses "
            f"{quic.configuration.connection_id_length}-byte ones"
        )
    if quic._state is not QuicConnectionState.FIRSTFLIGHT or quic._host_cid_seq != 1:  # noqa: SLF001
        raise ConnectionIdError("worker CIDs must be installed before the connection receives a datagram")
    first = new_cid(index)
    quic._host_cids[0].cid = first  # noqa: SLF001
    quic.host_cid = first
    quic._local_initial_source_connection_id = first  # noqa: SLF001
    quic.__class__ = WorkerCidConnection
    assert isinstance(quic, WorkerCidConnection)
    quic.worker_index = index
    return quic
