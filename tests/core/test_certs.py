"""Self-signed certificates: browser-acceptable, rotated before expiry, old hashes kept while valid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core.certs import CertificateError, CertificateStore, load_certificate

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def store(tmp_path: Path) -> CertificateStore:
    return CertificateStore(tmp_path / "tls", timedelta(hours=240), timedelta(hours=72))


def test_a_new_certificate_is_what_browsers_accept_by_hash(tmp_path: Path) -> None:
    cert = store(tmp_path).rotate(NOW)
    parsed = x509.load_pem_x509_certificate(cert.cert_path.read_bytes())
    assert isinstance(parsed.public_key(), ec.EllipticCurvePublicKey)
    assert parsed.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert parsed.not_valid_after_utc - parsed.not_valid_before_utc < timedelta(days=14)
    assert len(parsed.extensions) >= 1
    assert cert.key_path.stat().st_mode & 0o777 == 0o600


def test_rotation_waits_until_the_certificate_is_due(tmp_path: Path) -> None:
    certs = store(tmp_path)
    first = certs.rotate(NOW)
    assert certs.rotate(NOW + timedelta(hours=100)) == first
    assert certs.next_rotation(NOW) == first.not_after - timedelta(hours=72)


def test_a_rotated_store_serves_the_new_one_and_publishes_both_hashes(tmp_path: Path) -> None:
    certs = store(tmp_path)
    first = certs.rotate(NOW)
    later = NOW + timedelta(hours=170)
    second = certs.rotate(later)
    assert second != first
    assert certs.current(later) == second
    assert certs.hashes(later) == [second.sha256, first.sha256]


def test_expired_certificates_are_pruned_and_never_served(tmp_path: Path) -> None:
    certs = store(tmp_path)
    first = certs.rotate(NOW)
    much_later = NOW + timedelta(hours=300)
    certs.rotate(much_later)
    assert not first.cert_path.exists()
    assert first.sha256 not in certs.hashes(much_later)


def test_an_empty_store_has_no_current_certificate(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no valid certificate"):
        store(tmp_path).current(NOW)


def test_a_validity_of_fourteen_days_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="less than 14 days"):
        CertificateStore(tmp_path, timedelta(days=14), timedelta(days=1))


def test_an_unreadable_configured_certificate_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(CertificateError, match="cannot read certificate"):
        load_certificate(bad, tmp_path / "key.pem")
