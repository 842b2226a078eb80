"""Entry point of a QUIC worker process (started by the supervisor with multiprocessing's spawn method).

The worker validates the configuration it was handed, verifies join tokens with the public half of the
signing key in the data directory, serves WebTransport on uvloop, reports `{"quic_port": port}` on
`ready_conn` once listening (or `{"error": message}` and exit status 1 when it cannot start), and shuts down
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core import logging as dt_logging
from darktower.core.config import Config, from_mapping
from darktower.core.errors import DarkTowerError
from darktower.core.tokens import TokenVerifier, signing_key_path
from darktower.workers.errors import WorkerError
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


def worker_process(config_data: dict[str, Any], index: int, ready_conn: Connection) -> None:
    try:
        config = from_mapping(config_data)
    except DarkTowerError as exc:
        ready_conn.send({"error": str(exc)})
        raise SystemExit(1) from None
    dt_logging.setup(config.log.level, config.log.format, f"worker-{index}")
    try:
        uvloop.run(_serve(config, index, ready_conn))
    except DarkTowerError as exc:
        log.error("worker cannot start: %s", exc, extra={"worker": index})  # noqa: TRY400 (expected, no trace)
        ready_conn.send({"error": str(exc)})
        raise SystemExit(1) from None


async def _serve(config: Config, index: int, ready_conn: Connection) -> None:
    server = await WorkerServer.start(config, verifier=load_verifier(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready_conn.send({"quic_port": server.port})
    log.info("worker ready", extra={"worker": index})
    try:
        await stop.wait()
    finally:
        await server.close()
        log.info("worker stopped", extra={"worker": index})
