"""`darktower serve`: prepare the data directory, start the QUIC workers and the control plane, supervise.

Order matters: the server takes the data directory's lock (one server per directory), then the signing key
and (self-signed mode) a valid certificate exist, and the heartbeat table
(`darktower.workers.heartbeat`) is created, before any child starts; the workers start first because the
control plane hands out URLs naming worker 0's bound QUIC port. Once all are ready the URLs are printed, then
`darktower: ready`, on stdout (scripts and tests wait for that line; systemd gets `READY=1`); logs go to
stderr.

The supervisor opens the workers' UDP sockets itself (`darktower.supervisor.reuseport`) before any child
starts, so a port in use fails start-up with a message naming `server.quic_port`, and keeps them open for
its whole life: worker k, and every process that replaces it, serves on socket k. With the reuseport CBPF
program every worker shares `quic_port` and the kernel steers each datagram by its connection ID; where the
kernel refuses it (or `server.steering` says so) worker k has `quic_port + k` and the control plane names
the meeting owner's port at join (`darktower.workers.shard.owner_index`). The log says which mode runs.

`server.workers` = 0 means one worker per usable core; any count is at most `WORKERS_PER_CORE` per usable
core: more processes than that only queue for the CPU, and a typo such as 200 for 20 should not start 200
interpreters.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from darktower.control.app import url_host
from darktower.control.consul_registration import start_node_heartbeat
from darktower.control.main import control_process
from darktower.core.certs import CertificateError, CertificateStore, load_certificate, store_for, utcnow
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import load_or_create_signing_key, signing_key_path
from darktower.supervisor.notify import SystemdNotifier
from darktower.supervisor.process import (
    HANDLED_SIGNALS,
    ChildSpec,
    StopRequestedError,
    Supervisor,
    SupervisorError,
    Timeouts,
)
from darktower.supervisor.reuseport import (
    SocketSetupError,
    Steering,
    SteeringUnavailableError,
    WorkerSockets,
    open_worker_sockets,
)
from darktower.supervisor.signals import SignalQueue
from darktower.workers.cluster_io import unlink_rings
from darktower.workers.cluster_records import MAX_WORKERS
from darktower.workers.heartbeat import HeartbeatTable, segment_name
from darktower.workers.main import worker_process

log = logging.getLogger(__name__)

_MAX_ROTATION_CHECK_S: Final = 3600.0
"""Rotation is re-checked at least this often, so a wall-clock jump cannot postpone it for days."""
_ROTATION_RETRY_S: Final = 60.0
WORKERS_PER_CORE: Final = 4


def _with_server(config_data: dict[str, Any], **server: Any) -> dict[str, Any]:
    return {**config_data, "server": {**config_data["server"], **server}}


def rotation_check(store: CertificateStore) -> float:
    """Rotates the self-signed certificate when due; returns the seconds until the next check.

    A failure (disk full, permissions) is logged and retried: the current certificate stays valid for
    `rotate_before_expiry_hours`, so there is time to fix it.
    """
    now = utcnow()
    try:
        serving = store.rotate(now)
    except (OSError, CertificateError):
        log.exception("cannot rotate the self-signed certificate; retrying in %.0f s", _ROTATION_RETRY_S)
        return _ROTATION_RETRY_S
    log.info("serving certificate valid until %s", serving.not_after.isoformat())
    wait = (store.next_rotation(now) - now) / timedelta(seconds=1)
    return min(_MAX_ROTATION_CHECK_S, max(1.0, wait))


def prepare_data_dir(config: Config) -> CertificateStore | None:
    """Makes the signing key and, in self-signed mode, a valid certificate; returns that certificate store."""
    key_path = signing_key_path(config.server.data_dir, config.auth.signing_key)
    try:
        Path(config.server.data_dir).mkdir(parents=True, exist_ok=True)
        load_or_create_signing_key(key_path)
    except (OSError, ValueError) as exc:
        raise SupervisorError(f"cannot use the join-token signing key {key_path}: {exc}") from None
    if config.tls.certificate:
        load_certificate(Path(config.tls.certificate), Path(config.tls.private_key))
        return None
    certificates = store_for(
        config.server.data_dir, config.tls.self_signed_validity_hours, config.tls.rotate_before_expiry_hours
    )
    try:
        certificates.rotate(utcnow())
    except OSError as exc:
        raise SupervisorError(
            f"cannot write a self-signed certificate in {config.server.data_dir}: {exc}"
        ) from None
    return certificates


def lock_data_dir(data_dir: str) -> int:
    """Holds `supervisor.lock` in the data directory for this process's life: one server per directory.

    The kernel drops the lock when the process dies, however it dies, so a killed server leaves nothing to
    clean up by hand. Returns the descriptor (close it to release).
    """
    path = Path(data_dir) / "supervisor.lock"
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SupervisorError(f"cannot use the data directory {data_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SupervisorError(
            f"another darktower serve is running with the data directory {data_dir}"
        ) from None
    return fd


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and systemd's CPUAffinity set)."""
    return len(os.sched_getaffinity(0))


def with_worker_count(config: Config, cores: int) -> Config:
    """`config` with `server.workers` = 0 replaced by `cores`, so every child sees the real count."""
    if config.server.workers:
        return config
    return from_mapping(_with_server(config.to_dict(), workers=cores))


def check_worker_count(workers: int, cores: int) -> None:
    """Raises SupervisorError naming `server.workers` when it exceeds WORKERS_PER_CORE per usable core."""
    limit = WORKERS_PER_CORE * cores
    if workers > limit:
        raise SupervisorError(
            f"server.workers: {workers} workers asked for; this machine allows at most {limit} "
            f"({WORKERS_PER_CORE} per usable core, {cores} usable)"
        )


def open_sockets(config: Config) -> WorkerSockets:
    """The workers' UDP sockets as `server.steering` asks; errors name the configuration key to fix."""
    server = config.server
    try:
        return open_worker_sockets(server.host, server.quic_port, server.workers, Steering(server.steering))
    except SteeringUnavailableError as exc:
        raise SupervisorError(f"server.steering: {server.steering}: {exc}") from None
    except SocketSetupError as exc:
        raise SupervisorError(f"server.quic_port: {exc}") from None


def serve(config: Config, announce: Callable[[str], None]) -> None:
    """Runs the server until SIGTERM/SIGINT, passing each stdout line to `announce`.

    Raises DarkTowerError when it cannot start: an unusable data directory, key or certificate, another
    server on the same data directory, or a child that fails to start (ChildFailedError). The children are
    stopped, and the heartbeat table removed, whatever happens.
    """
    cores = usable_cores()
    config = with_worker_count(config, cores)
    check_worker_count(config.server.workers, cores)
    lock = lock_data_dir(config.server.data_dir)
    try:
        certificates = prepare_data_dir(config)
        sockets = open_sockets(config)
        table_name = segment_name(config.server.data_dir)
        if HeartbeatTable.unlink(table_name):
            log.warning("removed the heartbeat table %s left by a server that was killed", table_name)
        if unlink_rings(config.server.data_dir, MAX_WORKERS):
            log.warning("removed the worker rings left by a server that was killed")
        table = HeartbeatTable.create(
            table_name,
            config.server.workers,
            supervisor_pid=os.getpid(),
            now_ns=time.monotonic_ns(),
            heartbeat_timeout_ns=int(config.server.heartbeat_timeout_s * 1e9),
        )
        notifier = SystemdNotifier.from_environment()
        try:
            _supervise(
                config,
                certificates=certificates,
                sockets=sockets,
                table=table,
                notifier=notifier,
                announce=announce,
            )
        finally:
            notifier.close()
            table.close()
            HeartbeatTable.unlink(table_name)
            unlink_rings(config.server.data_dir, config.server.workers)
            sockets.close()
    finally:
        os.close(lock)


def _supervise(
    config: Config,
    *,
    certificates: CertificateStore | None,
    sockets: WorkerSockets,
    table: HeartbeatTable,
    notifier: SystemdNotifier,
    announce: Callable[[str], None],
) -> None:
    config_data = config.to_dict()
    host = url_host(config.server.advertised_host)
    timeouts = Timeouts(drain_s=config.server.drain_timeout_s, heartbeat_s=config.server.heartbeat_timeout_s)
    with SignalQueue(HANDLED_SIGNALS) as signals:
        supervisor = Supervisor(
            multiprocessing.get_context("spawn"), signals, timeouts=timeouts, table=table, notifier=notifier
        )
        try:
            quic_ports = supervisor.start_all(
                [
                    (
                        ChildSpec(
                            name=f"worker-{index}",
                            target=worker_process,
                            args=functools.partial(_worker_args, config_data, index, sock),
                            ready_key="quic_port",
                            slot=index,
                        ),
                        port,
                    )
                    for index, (sock, port) in enumerate(zip(sockets.sockets, sockets.ports, strict=True))
                ]
            )
            quic_port = quic_ports[0]
            owner_ports = quic_ports if sockets.mode is Steering.PORT_PER_WORKER else []
            http_port = supervisor.start(
                ChildSpec(
                    name="control",
                    target=control_process,
                    args=lambda port: (
                        _with_server(config_data, http_port=port, quic_port=quic_port),
                        quic_port,
                        owner_ports,
                    ),
                    ready_key="http_port",
                ),
                config.server.http_port,
            )
            announce(f"darktower: serving HTTP API on http://{host}:{http_port}")
            announce(f"darktower: serving WebTransport on https://{host}:{quic_port}")
            if len(owner_ports) > 1:
                log.info("joins name the UDP port of the meeting's owner worker")
            announce("darktower: ready")
            notifier.ready(f"{len(quic_ports)} workers; HTTP on port {http_port}")
            consul = start_node_heartbeat(config, table, owner_ports or [quic_port])
            try:
                supervisor.run(None if certificates is None else lambda: rotation_check(certificates))
            finally:
                if consul is not None:
                    consul.stop()
        except StopRequestedError:
            log.info("stopped before start-up finished")
        finally:
            supervisor.stop()


def _worker_args(config_data: dict[str, Any], index: int, sock: socket.socket, port: int) -> tuple[Any, ...]:
    """Worker `index`'s arguments: the socket travels to the child as a descriptor (multiprocessing's spawn
    passes it through `pass_fds`), the supervisor's own copy stays open."""
    return (_with_server(config_data, quic_port=port), index, sock)
