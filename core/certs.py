"""Self-signed QUIC certificates that browsers accept by hash, rotated before they expire.

Browsers accept a WebTransport server by `serverCertificateHashes` only for ECDSA certificates valid for less
than 14 days. The supervisor is the single writer (`CertificateStore.rotate`); workers serve `current()` and
the control plane publishes `hashes()`, which include the certificate being rotated out, so a client that
fetched its hashes just before a rotation still connects.

Files: `<dir>/<not_before_epoch>.crt` and `.key` (PEM, key mode 0600). Time is always passed in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from darktower.core.errors import DarkTowerError

_BACKDATE = timedelta(minutes=1)
"""Tolerance for clients whose clock runs slightly behind; it counts against the 14-day span."""


class CertificateError(DarkTowerError):
    """No usable certificate, or the configured one cannot be read."""


@dataclass(frozen=True, slots=True)
class ServingCertificate:
    cert_path: Path
    key_path: Path
    sha256: bytes
    """SHA-256 of the DER certificate: the value of `serverCertificateHashes`."""
    not_before: datetime
    not_after: datetime


class CertificateStore:
    def __init__(self, directory: Path, validity: timedelta, rotate_before: timedelta) -> None:
        if validity >= timedelta(days=14):
            raise CertificateError("self-signed certificates must be valid for less than 14 days")
        self._dir = directory
        self._validity = validity
        self._rotate_before = rotate_before

    def rotate(self, now: datetime) -> ServingCertificate:
        """Makes a new certificate when there is none or the newest is due for rotation; prunes expired ones."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for cert in self._all():
            if cert.not_after <= now:
                cert.cert_path.unlink(missing_ok=True)
                cert.key_path.unlink(missing_ok=True)
        newest = self._newest(now)
        if newest is None or newest.not_after - now <= self._rotate_before:
            newest = self._create(now)
        return newest

    def current(self, now: datetime) -> ServingCertificate:
        """The certificate to serve: the newest one valid at `now`."""
        newest = self._newest(now)
        if newest is None:
            raise CertificateError(f"no valid certificate in {self._dir}")
        return newest

    def hashes(self, now: datetime) -> list[bytes]:
        """SHA-256 of every certificate valid at `now`, newest first."""
        valid = [c for c in self._all() if c.not_before <= now < c.not_after]
        return [c.sha256 for c in sorted(valid, key=lambda c: c.not_before, reverse=True)]

    def next_rotation(self, now: datetime) -> datetime:
        """When `rotate` next has work to do."""
        newest = self._newest(now)
        return now if newest is None else newest.not_after - self._rotate_before

    def _newest(self, now: datetime) -> ServingCertificate | None:
        valid = [c for c in self._all() if c.not_before <= now < c.not_after]
        return max(valid, key=lambda c: c.not_before, default=None)

    def _all(self) -> list[ServingCertificate]:
        if not self._dir.is_dir():
            return []
        found = []
        for cert_path in self._dir.glob("*.crt"):
            key_path = cert_path.with_suffix(".key")
            if key_path.exists():
                found.append(load_certificate(cert_path, key_path))
        return found

    def _create(self, now: datetime) -> ServingCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        not_before = now - _BACKDATE
        not_after = not_before + self._validity
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "darktower self-signed")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        stem = self._dir / str(int(not_before.timestamp()))
        key_path = stem.with_suffix(".key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        # The certificate is written last: readers only consider a .crt whose .key already exists.
        cert_path = stem.with_suffix(".crt")
        tmp = cert_path.with_suffix(".crt.tmp")
        tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tmp.replace(cert_path)
        return load_certificate(cert_path, key_path)


def load_certificate(cert_path: Path, key_path: Path) -> ServingCertificate:
    """Reads a PEM certificate (the first of a chain) and names its key file."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read certificate {cert_path}: {exc}") from None
    if not key_path.exists():
        raise CertificateError(f"private key {key_path} does not exist")
    return ServingCertificate(
        cert_path=cert_path,
        key_path=key_path,
        sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def utcnow() -> datetime:
    """The one place adapters read the wall clock for certificate decisions."""
    return datetime.now(UTC)


def store_for(data_dir: str, validity_hours: int, rotate_before_hours: int) -> CertificateStore:
    """The self-signed store of a data directory (`<data_dir>/tls`)."""
    return CertificateStore(
        Path(data_dir) / "tls", timedelta(hours=validity_hours), timedelta(hours=rotate_before_hours)
    )
