"""The byte-level half of end-to-end encryption (docs/E2EE.md), free of state: identity keys, safety
numbers, the `HELLO` and `MEDIA_KEY` key messages, and the pairwise wrap of a media key.

The TypeScript twin is `client/web/src/lib/keymessages.ts`; tests/data/e2ee-vectors.json keeps the two byte
for byte identical. ECDH on P-256 (the shared secret is the x-coordinate, 32 bytes), HKDF-SHA256 and
AES-256-GCM, all from `cryptography`. Every way a key message can be refused raises `KeyMessageError`,
whose `code` (a `KeyMessageRefusal` value) a receiver counts by; a refused message changes no state.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from darktower.client.errors import ClientError
from darktower.client.sframe import CipherSuite

VERSION: Final = 1
HELLO: Final = 1
MEDIA_KEY: Final = 2
PUBLIC_KEY_SIZE: Final = 65
"""An uncompressed P-256 point: 0x04 || X || Y."""
WRAP_NONCE_SIZE: Final = 12
BASE_KEY_SIZE: Final = 32
MEDIA_KEY_PLAINTEXT_SIZE: Final = 42
"""suite (2) + kid (8) + base_key (32)."""
_TAG_SIZE: Final = 16
HELLO_SIZE: Final = 2 + PUBLIC_KEY_SIZE
MEDIA_KEY_SIZE: Final = 2 + WRAP_NONCE_SIZE + MEDIA_KEY_PLAINTEXT_SIZE + _TAG_SIZE
DEFAULT_SUITE: Final = CipherSuite.AES_128_GCM_SHA256_128
SAFETY_NUMBER_LENGTH: Final = 35

_SAFETY_LABEL: Final = b"DarkTower safety number v1"
_WRAP_SALT: Final = b"DarkTower E2EE v1"
_WRAP_INFO: Final = b"DarkTower media key wrap"
_AAD_LABEL: Final = b"DarkTower media key v1"
_PLAINTEXT: Final = struct.Struct("!HQ")
"""suite, kid; the base key follows."""
_MAX_ID_BYTES: Final = 0xFFFF


class KeyMessageRefusal(StrEnum):
    """Why a key message was refused; the same names as the browser's, counted by receivers."""

    MALFORMED = "malformed"
    BAD_IDENTITY = "bad_identity"
    IDENTITY_CHANGED = "identity_changed"
    UNKNOWN_SENDER = "unknown_sender"
    AUTH = "auth"
    STALE_KID = "stale_kid"
    UNSUPPORTED_SUITE = "unsupported_suite"


class KeyMessageError(ClientError):
    """A key message was refused; `refusal` says why (its value is also the error's `code`)."""

    def __init__(self, refusal: KeyMessageRefusal, message: str) -> None:
        super().__init__(refusal.value, message)
        self.refusal = refusal


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """The peer's identity key; anything but an uncompressed point on P-256 is refused (`bad_identity`)."""
    if len(data) != PUBLIC_KEY_SIZE or data[0] != 0x04:
        raise KeyMessageError(
            KeyMessageRefusal.BAD_IDENTITY, f"an identity key is {PUBLIC_KEY_SIZE} bytes starting with 0x04"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        raise KeyMessageError(
            KeyMessageRefusal.BAD_IDENTITY, "the identity key is not a point on P-256"
        ) from None


class Identity:
    """This client's identity: a P-256 private key, used only for ECDH, and its public key (65 bytes)."""

    __slots__ = ("_private", "public_key")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise KeyMessageError(KeyMessageRefusal.BAD_IDENTITY, "an identity key is on P-256")
        self._private = private_key
        self.public_key = public_key_bytes(private_key.public_key())

    @classmethod
    def generate(cls) -> Identity:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_scalar(cls, d: bytes) -> Identity:
        """An identity from a known 32-byte private scalar: for test vectors only."""
        return cls(ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()))

    def shared_secret(self, peer_public_key: bytes) -> bytes:
        """ECDH with the peer: the shared point's x-coordinate, 32 bytes."""
        return self._private.exchange(ec.ECDH(), load_public_key(peer_public_key))


def safety_number(a: bytes, b: bytes) -> str:
    """The 35-character safety number of two identity keys (the same whichever is first)."""
    lo, hi = sorted((a, b))
    digest = hashlib.sha512(_SAFETY_LABEL + lo + hi).digest()
    groups = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
    return " ".join(f"{group:05d}" for group in groups)


@dataclass(frozen=True, slots=True)
class Hello:
    public_key: bytes


@dataclass(frozen=True, slots=True)
class SealedMediaKey:
    """A `MEDIA_KEY` as it travels: the wrap nonce and the AES-256-GCM ciphertext with its tag."""

    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class MediaKey:
    """One sender's media key: the SFrame suite, the KID (the sender's epoch) and the base key."""

    suite: CipherSuite
    kid: int
    base_key: bytes


def encode_hello(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyMessageError(KeyMessageRefusal.BAD_IDENTITY, f"an identity key is {PUBLIC_KEY_SIZE} bytes")
    return bytes((VERSION, HELLO)) + public_key


def decode_key_message(payload: bytes) -> Hello | SealedMediaKey:
    """Parses a key message; the wrong version, an unknown type, a truncated body or trailing bytes raise.

    A HELLO's key is only checked for its length here; `load_public_key` checks it is on the curve."""
    if len(payload) < 2:
        raise KeyMessageError(
            KeyMessageRefusal.MALFORMED, f"key message of {len(payload)} bytes has no version and type"
        )
    version, kind = payload[0], payload[1]
    if version != VERSION:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"key message version {version} is not {VERSION}")
    if kind == HELLO:
        name, expected = "HELLO", HELLO_SIZE
    elif kind == MEDIA_KEY:
        name, expected = "MEDIA_KEY", MEDIA_KEY_SIZE
    else:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"unknown key message type {kind}")
    if len(payload) != expected:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"{name} is {expected} bytes, got {len(payload)}")
    if kind == HELLO:
        return Hello(bytes(payload[2:]))
    return SealedMediaKey(bytes(payload[2 : 2 + WRAP_NONCE_SIZE]), bytes(payload[2 + WRAP_NONCE_SIZE :]))


def wrap_key(own: Identity, other: bytes, sender_public: bytes, recipient_public: bytes) -> bytes:
    """The 32-byte wrap key for media keys that the sender sends to the recipient (one per direction).

    `own` is whichever of the two this client is; `other` is the other side's public key."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=_WRAP_SALT,
        info=_WRAP_INFO + sender_public + recipient_public,
    )
    return hkdf.derive(own.shared_secret(other))


def _length_prefixed(text: str) -> bytes:
    data = text.encode()
    if len(data) > _MAX_ID_BYTES:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"participant id over {_MAX_ID_BYTES} bytes")
    return len(data).to_bytes(2, "big") + data


def media_key_aad(sender_id: str, recipient_id: str) -> bytes:
    """The AAD of a `MEDIA_KEY` from `sender_id` to `recipient_id`."""
    return _AAD_LABEL + _length_prefixed(sender_id) + _length_prefixed(recipient_id)


def encode_media_key_plaintext(key: MediaKey) -> bytes:
    if len(key.base_key) != BASE_KEY_SIZE:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"a base key is {BASE_KEY_SIZE} bytes")
    return _PLAINTEXT.pack(key.suite, key.kid) + key.base_key


def decode_media_key_plaintext(plaintext: bytes) -> MediaKey:
    if len(plaintext) != MEDIA_KEY_PLAINTEXT_SIZE:
        raise KeyMessageError(
            KeyMessageRefusal.MALFORMED, f"media key plaintext is {MEDIA_KEY_PLAINTEXT_SIZE} bytes"
        )
    suite, kid = _PLAINTEXT.unpack_from(plaintext)
    try:
        cipher_suite = CipherSuite(suite)
    except ValueError:
        raise KeyMessageError(
            KeyMessageRefusal.UNSUPPORTED_SUITE, f"cipher suite 0x{suite:04x} is not supported"
        ) from None
    return MediaKey(cipher_suite, kid, bytes(plaintext[_PLAINTEXT.size :]))


def seal_media_key(
    wrap: bytes, sender_id: str, recipient_id: str, key: MediaKey, nonce: bytes | None = None
) -> bytes:
    """A `MEDIA_KEY` message carrying `key`, sealed under `wrap` for the pair (sender, recipient)."""
    nonce = os.urandom(WRAP_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != WRAP_NONCE_SIZE:
        raise KeyMessageError(KeyMessageRefusal.MALFORMED, f"a wrap nonce is {WRAP_NONCE_SIZE} bytes")
    sealed = AESGCM(wrap).encrypt(
        nonce, encode_media_key_plaintext(key), media_key_aad(sender_id, recipient_id)
    )
    return bytes((VERSION, MEDIA_KEY)) + nonce + sealed


def open_media_key(wrap: bytes, sender_id: str, recipient_id: str, message: SealedMediaKey) -> MediaKey:
    """Opens a decoded `MEDIA_KEY` from `sender_id` to `recipient_id`; a wrong tag raises (`auth`)."""
    try:
        plaintext = AESGCM(wrap).decrypt(
            message.nonce, message.ciphertext, media_key_aad(sender_id, recipient_id)
        )
    except InvalidTag:
        raise KeyMessageError(
            KeyMessageRefusal.AUTH, f"MEDIA_KEY from {sender_id!r} does not authenticate"
        ) from None
    return decode_media_key_plaintext(plaintext)
