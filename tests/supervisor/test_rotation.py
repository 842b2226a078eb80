"""Certificate housekeeping in the supervisor's loop: when it rotates, and that a failure is retried."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from darktower.core.certs import CertificateStore, utcnow
from darktower.supervisor.serve import rotation_check


def test_a_missing_certificate_is_made_and_the_next_check_is_at_most_an_hour_away(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "tls", timedelta(days=10), timedelta(days=3))
    assert rotation_check(store) == 3600.0
    assert len(store.hashes(utcnow())) == 1


def test_the_next_check_is_when_the_certificate_is_due(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "tls", timedelta(minutes=10), timedelta(minutes=5))
    # Certificates are backdated by a minute: due 10 - 1 - 5 = 4 minutes from now.
    assert 230 <= rotation_check(store) <= 240


def test_a_failed_rotation_is_logged_and_retried_in_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = CertificateStore(blocker / "tls", timedelta(days=10), timedelta(days=3))
    assert rotation_check(store) == 60.0
    assert "cannot rotate the self-signed certificate" in caplog.text
