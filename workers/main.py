"""Entry point of a QUIC worker process (started by the supervisor with multiprocessing's spawn method).

The worker validates the configuration it was handed, verifies join tokens with the public half of the
signing key in the data directory, serves WebTransport on uvloop on the UDP socket the supervisor handed it
(or, given none, one it binds on `server.quic_port`), with connection IDs that name worker `index`
(`darktower.workers.cid`), and reports `{"quic_port": port}` on `ready_conn` once listening (or
`{"error": message}` and exit status 1 when it cannot start).

While it runs it writes its heartbeat and load into slot `index` of the supervisor's heartbeat table
(`darktower.workers.heartbeat`, found by the data directory) from its event loop, so a stuck loop reads as a
dead worker. Run without a supervisor (no table), it serves all the same. It serves its admin channel
(`darktower.workers.admin`: host actions, live meetings, join/leave events) on a unix socket in the data
directory.

Signals: SIGTERM drains: the worker keeps serving its open sessions and exits once none is left or
`server.drain_timeout_s` has passed, closing whatever is still open. SIGINT, also during a drain, closes
every session at once and exits. It gets SIGINT when the supervisor dies (`exit_with_parent`). SIGHUP is
ignored: replacing workers is the supervisor's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core import logging as dt_logging
from darktower.core.config import Config, from_mapping
from darktower.core.errors import DarkTowerError
from darktower.core.tokens import TokenVerifier, signing_key_path
from darktower.supervisor.lifeline import exit_with_parent
from darktower.workers.admin import AdminChannel
from darktower.workers.errors import WorkerError
from darktower.workers.heartbeat import (
    BEAT_INTERVAL_S,
    HeartbeatTable,
    NoHeartbeatTableError,
    WorkerState,
    segment_name,
)
from darktower.workers.server import WorkerServer

log = logging.getLogger(__name__)


class WorkerStartError(WorkerError):
    """The worker cannot serve: its configuration, key or certificate is unusable."""


def load_verifier(config: Config) -> TokenVerifier:
    """The verifier for tokens the control plane signs; the worker never writes or creates the key."""
    path = signing_key_path(config.server.data_dir, config.auth.signing_key)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise WorkerStartError(f"cannot read the join-token signing key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise WorkerStartError(f"{path}: join-token signing key must be an EC private key")
    return TokenVerifier(key.public_key(), config.auth.issuer)


def worker_process(
    config_data: dict[str, Any], index: int, sock: socket.socket | None, ready_conn: Connection
) -> None:
    exit_with_parent(signal.SIGINT)
    try:
        config = from_mapping(config_data)
    except DarkTowerError as exc:
        ready_conn.send({"error": str(exc)})
        raise SystemExit(1) from None
    dt_logging.setup(config.log.level, config.log.format, f"worker-{index}")
    try:
        uvloop.run(_serve(config, index, sock, ready_conn))
    except DarkTowerError as exc:
        log.error("worker cannot start: %s", exc, extra={"worker": index})  # noqa: TRY400 (expected, no trace)
        ready_conn.send({"error": str(exc)})
        raise SystemExit(1) from None


def _attach_table(config: Config, index: int) -> HeartbeatTable | None:
    try:
        table = HeartbeatTable.attach(segment_name(config.server.data_dir))
    except NoHeartbeatTableError:
        log.info("no supervisor heartbeat table; serving without heartbeats", extra={"worker": index})
        return None
    if index >= table.slots:
        table.close()
        raise WorkerStartError(f"the heartbeat table has {table.slots} slots; worker {index} has none")
    return table


async def _beat(table: HeartbeatTable, index: int, server: WorkerServer) -> None:
    """Writes the heartbeat and load every BEAT_INTERVAL_S until cancelled. The ring lag is the server's
    `dump()["ring_lag"]` when it follows other workers' media rings (records not yet read), else 0."""
    while True:
        state = server.dump()
        table.beat(
            index,
            time.monotonic_ns(),
            connections=state["connections"],
            meetings=len(state["meetings"]),
            ring_lag=state.get("ring_lag", 0),
        )
        await asyncio.sleep(BEAT_INTERVAL_S)


async def _drain(
    server: WorkerServer, table: HeartbeatTable | None, stop: asyncio.Event, timeout_s: float, index: int
) -> None:
    """Returns once no session is open, `stop` is set, or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    if table is not None:
        table.set_state(index, WorkerState.DRAINING)
    log.info("draining: %d sessions open", server.dump()["sessions"], extra={"worker": index})
    while (open_sessions := server.dump()["sessions"]) and not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("drain deadline passed; closing %d sessions", open_sessions, extra={"worker": index})
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(remaining, BEAT_INTERVAL_S))


async def _serve(config: Config, index: int, sock: socket.socket | None, ready_conn: Connection) -> None:
    table = _attach_table(config, index)
    try:
        await _run(config, index, sock, ready_conn, table)
    finally:
        if table is not None:
            table.close()


async def _run(
    config: Config,
    index: int,
    sock: socket.socket | None,
    ready_conn: Connection,
    table: HeartbeatTable | None,
) -> None:
    server = await WorkerServer.start(config, verifier=load_verifier(config), sock=sock, worker_index=index)
    drain, stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, drain.set)

    def interrupt() -> None:
        stop.set()
        drain.set()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    # A hang-up is the supervisor's to handle (it replaces workers); one sent to the whole process group
    # must not kill this worker on the way.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    beating = None if table is None else asyncio.create_task(_beat(table, index, server))
    admin = await _open_admin_channel(config, index, server)
    ready_conn.send({"quic_port": server.port})
    log.info("worker ready", extra={"worker": index})
    try:
        await drain.wait()
        if not stop.is_set():
            await _drain(server, table, stop, config.server.drain_timeout_s, index)
    finally:
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        if admin is not None:
            await admin.close()
        await server.close()
        log.info("worker stopped", extra={"worker": index})


async def _open_admin_channel(config: Config, index: int, server: WorkerServer) -> AdminChannel | None:
    """The control plane's way in (host actions, live meetings, history); a worker that cannot open it
    still serves media, and the control plane reports it unreachable."""
    try:
        return await AdminChannel.start(config.server.data_dir, index, server)
    except WorkerError as exc:
        log.error("serving without an admin channel: %s", exc, extra={"worker": index})  # noqa: TRY400
        return None
