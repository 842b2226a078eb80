"""`darktower serve`: prepare the data directory, start the QUIC worker and the control plane, supervise.

Order matters: the signing key and (self-signed mode) a valid certificate exist before any child starts;
the worker starts first because the control plane hands out URLs naming the worker's bound QUIC port. Once
both are ready the URLs are printed, then `darktower: ready`, on stdout (scripts and tests wait for that
line); logs go to stderr.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from darktower.control.app import url_host
from darktower.control.main import control_process
from darktower.core.certs import CertificateError, CertificateStore, load_certificate, store_for, utcnow
from darktower.core.config import Config
from darktower.core.tokens import load_or_create_signing_key, signing_key_path
from darktower.supervisor.process import (
    STOP_SIGNALS,
    ChildSpec,
    StopRequestedError,
    Supervisor,
    SupervisorError,
)
from darktower.supervisor.signals import SignalQueue
from darktower.workers.main import worker_process

log = logging.getLogger(__name__)

_MAX_ROTATION_CHECK_S: Final = 3600.0
"""Rotation is re-checked at least this often, so a wall-clock jump cannot postpone it for days."""
_ROTATION_RETRY_S: Final = 60.0


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


def serve(config: Config, announce: Callable[[str], None]) -> None:
    """Runs the server until SIGTERM/SIGINT, passing each stdout line to `announce`.

    Raises DarkTowerError when it cannot start: an unusable data directory, key or certificate, or a child
    that fails to start (ChildFailedError). The children are stopped whatever happens.
    """
    certificates = prepare_data_dir(config)
    config_data = config.to_dict()
    host = url_host(config.server.advertised_host)
    with SignalQueue(STOP_SIGNALS) as signals:
        supervisor = Supervisor(multiprocessing.get_context("spawn"), signals)
        try:
            quic_port = supervisor.start(
                ChildSpec(
                    name="worker-0",
                    target=worker_process,
                    args=lambda port: (_with_server(config_data, quic_port=port), 0),
                    ready_key="quic_port",
                ),
                config.server.quic_port,
            )
            http_port = supervisor.start(
                ChildSpec(
                    name="control",
                    target=control_process,
                    args=lambda port: (
                        _with_server(config_data, http_port=port, quic_port=quic_port),
                        quic_port,
                    ),
                    ready_key="http_port",
                ),
                config.server.http_port,
            )
            announce(f"darktower: serving HTTP API on http://{host}:{http_port}")
            announce(f"darktower: serving WebTransport on https://{host}:{quic_port}")
            announce("darktower: ready")
            supervisor.run(None if certificates is None else lambda: rotation_check(certificates))
        except StopRequestedError:
            log.info("stopped before start-up finished")
        finally:
            supervisor.stop()
