"""Fixtures shared across rooms: a browser-acceptable self-signed certificate and a join-token key pair."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from darktower.core.certs import CertificateStore, ServingCertificate, utcnow
from darktower.core.tokens import TokenSigner, TokenVerifier

ISSUER = "darktower-test"


@pytest.fixture(scope="session")
def serving_certificate(tmp_path_factory: pytest.TempPathFactory) -> ServingCertificate:
    """One self-signed certificate (ECDSA P-256, valid 10 days) for the whole test session."""
    store = CertificateStore(tmp_path_factory.mktemp("tls"), timedelta(days=10), timedelta(days=3))
    return store.rotate(utcnow())


@pytest.fixture(scope="session")
def token_keys() -> tuple[TokenSigner, TokenVerifier]:
    """A join-token signer and the verifier that accepts its tokens."""
    key = ec.generate_private_key(ec.SECP256R1())
    return TokenSigner(key, ISSUER, ttl_s=120), TokenVerifier(key.public_key(), ISSUER)
