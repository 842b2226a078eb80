"""The control plane process: the API of `darktower.control.app` served by hypercorn.

`control_process` is the child-process entry the supervisor spawns. It listens on `server.host:http_port`
(port 0 picks a free one) for plain HTTP/1.1 and, with `server.https`, on TCP `https_port` for HTTP/1.1 and
HTTP/2 over TLS (chosen by ALPN) and on UDP `https_port` for HTTP/3 (hypercorn's aioquic integration; every
response advertises it in `Alt-Svc`), all served by one hypercorn server. TLS uses the workers' certificate:
the configured one, or the newest self-signed one of the data directory, read at start (a self-signed one
rotates, so a long-running control plane meant for browsers over HTTPS wants a configured certificate). It opens the configured durable store (`[store] durable`: SQLite or PostgreSQL, with
its migrations applied; meetings and accounts) and ephemeral store (`[store] ephemeral`: rate limits, OIDC
sign-in state) and, with `discovery.mode = "consul"`, keeps Consul's view of the media nodes fresh in the
background (joins go to the node it picks) after laying the shared configuration in Consul KV over its own
(`darktower.control.consul_config`), and only then reports `{"http_port": <bound port>}` on `ready_conn`, so a
supervisor that has the message can send requests at once. SIGTERM or SIGINT stops it gracefully. Failing
to start (port taken, unusable database) logs why, reports `{"error": why}` and exits with status 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import uvloop
from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio import serve
from hypercorn.asyncio.udp_server import UDPServer
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework

from darktower.control.access_tokens import AccessTokens
from darktower.control.app import create_app
from darktower.control.backends import open_durable_store, open_ephemeral_store
from darktower.control.consul_config import with_shared_config
from darktower.control.consul_discovery import ConsulDiscovery, SharedConfig, consul_client
from darktower.control.metrics import ControlMetrics, heartbeat_reader
from darktower.core import logging as dt_logging
from darktower.core.certs import load_certificate, store_for, utcnow
from darktower.core.config import Config, from_mapping
from darktower.core.errors import DarkTowerError
from darktower.core.tokens import TokenSigner, load_or_create_signing_key, signing_key_path
from darktower.supervisor.lifeline import exit_with_parent
from darktower.workers.heartbeat import segment_name

log = logging.getLogger(__name__)

_HASHABLE_VALIDITY = timedelta(days=14)
"""Browsers accept a certificate by hash only when it is valid for less than this."""


def certificate_hashes_for(config: Config) -> Callable[[], list[bytes]]:
    """What join replies list as `certificate_hashes`.

    Self-signed mode: every certificate of the store valid now (rotation keeps the outgoing one listed). A
    configured certificate is listed only when browsers can accept it by hash (valid under 14 days); a
    long-lived one is meant for ordinary Web PKI validation, and listing it would make browsers refuse it.
    """
    if config.tls.certificate:
        cert = load_certificate(Path(config.tls.certificate), Path(config.tls.private_key))
        fixed = [cert.sha256] if cert.not_after - cert.not_before < _HASHABLE_VALIDITY else []
        return lambda: list(fixed)
    store = store_for(
        config.server.data_dir, config.tls.self_signed_validity_hours, config.tls.rotate_before_expiry_hours
    )
    return lambda: store.hashes(utcnow())


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0 = ephemeral)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=1024)


_FREE_PORT_TRIES = 20


class _QuicServer(UDPServer):
    """hypercorn 0.18's QUIC server, made to stop: upstream's keeps waiting for a datagram after shutdown (so
    shutdown waits out `graceful_timeout`) and never closes its UDP transport (a leaked socket). This one
    stops serving when the server terminates and closes its transport."""

    async def run(self) -> None:
        serving = asyncio.ensure_future(super().run())
        terminated = asyncio.ensure_future(self.context.terminated.wait())
        try:
            await asyncio.wait({serving, terminated}, return_when=asyncio.FIRST_COMPLETED)
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        finally:
            terminated.cancel()
            if self.transport is not None:
                self.transport.close()


hypercorn_run.UDPServer = _QuicServer  # type: ignore[attr-defined]


def listen_tcp_and_udp(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket on the same `host:port`; with port 0, a number free for both."""
    for _ in range(_FREE_PORT_TRIES if port == 0 else 1):
        tcp = listen(host, port)
        bound = int(tcp.getsockname()[1])
        family = socket.getaddrinfo(host, bound, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0][0]
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, bound))
        except OSError:
            tcp.close()
            udp.close()
            if port != 0:
                raise
            continue
        return tcp, udp
    raise OSError(f"no port free for both TCP and UDP on {host} after {_FREE_PORT_TRIES} tries")


def tls_files(config: Config) -> tuple[Path, Path]:
    """Certificate and key files of the control plane's TLS: the workers' (see the module docstring)."""
    if config.tls.certificate:
        cert = load_certificate(Path(config.tls.certificate), Path(config.tls.private_key))
    else:
        store = store_for(
            config.server.data_dir,
            config.tls.self_signed_validity_hours,
            config.tls.rotate_before_expiry_hours,
        )
        cert = store.rotate(utcnow())
    return cert.cert_path, cert.key_path


def hypercorn_config(
    config: Config, plain: socket.socket, secure: tuple[socket.socket, socket.socket] | None
) -> HypercornConfig:
    """One hypercorn server over the plain socket and, when given, the TLS (TCP) and QUIC (UDP) sockets."""
    server_config = HypercornConfig()
    server_config.errorlog = logging.getLogger("hypercorn.error")
    if secure is None:
        server_config.bind = [f"fd://{plain.detach()}"]
        return server_config
    cert_path, key_path = tls_files(config)
    server_config.certfile = str(cert_path)
    server_config.keyfile = str(key_path)
    server_config.bind = [f"fd://{secure[0].detach()}"]
    server_config.quic_bind = [f"fd://{secure[1].detach()}"]
    server_config.insecure_bind = [f"fd://{plain.detach()}"]
    return server_config


async def run_control(
    config: Config,
    quic_port: int,
    *,
    on_ready: Callable[[int], None],
    stop: asyncio.Event,
    owner_ports: Sequence[int] = (),
    on_https_ready: Callable[[int], None] = lambda _port: None,
) -> None:
    """Serves until `stop` is set; calls `on_ready(port)` once requests can be sent (after
    `on_https_ready(port)` with the TLS and QUIC port, when `server.https` is on). `owner_ports`: each
    worker's port when they listen on one each (joins then name the meeting owner's; see `create_app`)."""
    key = load_or_create_signing_key(signing_key_path(config.server.data_dir, config.auth.signing_key))
    signer = TokenSigner(key, config.auth.issuer, config.auth.join_token_ttl_s)
    access_tokens = AccessTokens(key, config.auth.issuer, config.auth.access_token_ttl_s)
    hashes = certificate_hashes_for(config)
    discovery = None
    if config.discovery.mode == "consul":
        client = consul_client(config.discovery)
        config = await with_shared_config(config, SharedConfig(client, config.discovery.kv_prefix))
        discovery = ConsulDiscovery(client, config.discovery)
    store = await open_durable_store(config)
    ephemeral = open_ephemeral_store(config)
    refreshing = asyncio.create_task(discovery.run(stop)) if discovery is not None else None
    try:
        app = create_app(
            config=config,
            signer=signer,
            store=store,
            certificate_hashes=hashes,
            quic_port=quic_port,
            owner_ports=owner_ports,
            accounts=store.accounts,
            ephemeral=ephemeral,
            access_tokens=access_tokens,
            metrics=ControlMetrics(heartbeat_reader(segment_name(config.server.data_dir))),
            discovery=discovery,
        )
        sock = listen(config.server.host, config.server.http_port)
        port = int(sock.getsockname()[1])
        secure = (
            listen_tcp_and_udp(config.server.host, config.server.https_port) if config.server.https else None
        )
        https_port = int(secure[0].getsockname()[1]) if secure is not None else None
        server_config = hypercorn_config(config, sock, secure)
        log.info("control plane listening", extra={"peer": f"{config.server.host}:{port}"})
        if https_port is not None:
            log.info(
                "control plane listening (TLS, QUIC)", extra={"peer": f"{config.server.host}:{https_port}"}
            )
            on_https_ready(https_port)
        on_ready(port)
        await serve(cast("ASGIFramework", app), server_config, shutdown_trigger=stop.wait, mode="asgi")
    finally:
        if refreshing is not None and discovery is not None:
            refreshing.cancel()
            await asyncio.gather(refreshing, return_exceptions=True)
            await discovery.close()
        await ephemeral.close()
        await store.close()


def control_process(
    config_data: dict[str, Any], quic_port: int, owner_ports: Sequence[int], ready_conn: Connection
) -> None:
    """Child-process entry (multiprocessing spawn): serve the API until SIGTERM/SIGINT (also sent when the
    supervisor dies)."""
    exit_with_parent(signal.SIGTERM)
    config = from_mapping(config_data)
    dt_logging.setup(config.log.level, config.log.format, "control")

    def report_ready(port: int) -> None:
        ready_conn.send({"http_port": port})
        ready_conn.close()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_control(config, quic_port, on_ready=report_ready, stop=stop, owner_ports=owner_ports)

    try:
        uvloop.run(main())
    except (DarkTowerError, OSError) as exc:
        log.error("control plane failed: %s", exc)  # noqa: TRY400 - the message is the whole story
        if not ready_conn.closed:
            ready_conn.send({"error": str(exc)})
        sys.exit(1)
    log.info("control plane stopped")
