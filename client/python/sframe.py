"""SFrame (RFC 9605): end-to-end authenticated encryption of whole media frames.

The server must never read media. Each sender encrypts every frame under its own key, named by a key id (KID),
with a per-key frame counter (CTR) that makes every nonce unique. Both travel in clear in the SFrame header
so a receiver can pick the key; the header and the caller's metadata are authenticated (AAD = header ||
metadata), so the server cannot alter them unnoticed either.

Layers, each usable alone and each exactly as the RFC specifies:
- `encode_header` / `decode_header`: the header of section 4.3 (minimal encodings only, both ways);
- `derive_key_salt`: the HKDF key schedule of section 4.4.2;
- `aead_encrypt` / `aead_decrypt`: the AEAD of each cipher suite (AES-GCM, or AES-CTR + HMAC of 4.5.1);
- `SFrameKey`: one KID's derived key, sealing and opening whole SFrame ciphertexts (4.4.3, 4.4.4);
- `SFrameContext`: a key store by KID, each key marked for encryption (with its next CTR) or decryption
  (with a replay window), and key retirement.

Every failure raises an `SFrameError` subclass, so a receiver counts and drops a bad frame with one handler.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.constant_time import bytes_eq
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from darktower.core.errors import DarkTowerError

MAX_U64: Final = 0xFFFF_FFFF_FFFF_FFFF
"""The largest KID or CTR: both are 64-bit unsigned integers."""
MAX_HEADER_SIZE: Final = 17
"""Config byte, 8 KID bytes, 8 CTR bytes."""
MIN_BASE_KEY_SIZE: Final = 16
"""`SFrameContext` refuses shorter base keys: they would be guessable, whatever the suite."""
DEFAULT_REPLAY_WINDOW: Final = 1024
"""CTR values a receiver remembers per KID: about 12 s of one sender's audio and video at 80 frames/s, so
video groups that lag audio are still accepted."""

_KEY_LABEL: Final = b"SFrame 1.0 Secret key "
_SALT_LABEL: Final = b"SFrame 1.0 Secret salt "
_CTR_HMAC_LENGTHS: Final = struct.Struct(">QQQ")
_COUNTER_SUFFIX: Final = b"\x00\x00\x00\x00"

Buffer = bytes | bytearray | memoryview


class SFrameError(DarkTowerError):
    """An SFrame operation failed; a receiver drops (and counts) the frame."""


class SFrameHeaderError(SFrameError, ValueError):
    """The bytes do not start with a well-formed SFrame header, or a KID/CTR cannot be encoded."""


class SFrameUnknownKeyError(SFrameError):
    """No decryption key is held for the frame's KID (never given, already retired, or a sending key).

    The RFC allows buffering such a frame until its key arrives; `kid` says which key it waits for."""

    def __init__(self, kid: int, reason: str) -> None:
        super().__init__(f"no decryption key for KID {kid}: {reason}")
        self.kid = kid


class SFrameAuthError(SFrameError):
    """The ciphertext, its header or the metadata was altered, or the frame was sealed with another key."""


class SFrameReplayError(SFrameError):
    """The frame's CTR was already accepted for its KID, or is older than the replay window remembers."""


class SFrameKeyError(SFrameError):
    """The key store was misused: a KID added twice or after retirement, a weak base key, a spent counter."""


class CipherSuite(IntEnum):
    """The cipher suites of RFC 9605 section 4.5, by their IANA code points."""

    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005

    @property
    def params(self) -> SuiteParams:
        return _SUITES[self]


@dataclass(frozen=True, slots=True)
class SuiteParams:
    """The constants of RFC 9605 table 1; `nka` is None for the AES-GCM suites."""

    hash: type[hashes.SHA256 | hashes.SHA512]
    nh: int
    nka: int | None
    nk: int
    nn: int
    nt: int


_SUITES: Final = {
    CipherSuite.AES_128_CTR_HMAC_SHA256_80: SuiteParams(hashes.SHA256, 32, 16, 48, 12, 10),
    CipherSuite.AES_128_CTR_HMAC_SHA256_64: SuiteParams(hashes.SHA256, 32, 16, 48, 12, 8),
    CipherSuite.AES_128_CTR_HMAC_SHA256_32: SuiteParams(hashes.SHA256, 32, 16, 48, 12, 4),
    CipherSuite.AES_128_GCM_SHA256_128: SuiteParams(hashes.SHA256, 32, None, 16, 12, 16),
    CipherSuite.AES_256_GCM_SHA512_128: SuiteParams(hashes.SHA512, 64, None, 32, 12, 16),
}


class SFrameHeader(NamedTuple):
    """A decoded header; `size` is how many bytes it takes at the start of the frame."""

    kid: int
    ctr: int
    size: int


class Decrypted(NamedTuple):
    """An opened frame: the key and counter it was sealed with, and its plaintext."""

    kid: int
    ctr: int
    plaintext: bytes


def _minimal_length(value: int) -> int:
    return max(1, (value.bit_length() + 7) // 8)


def encode_header(kid: int, ctr: int) -> bytes:
    """The header for (KID, CTR): values 0-7 inside the config byte, larger ones in the fewest bytes."""
    for name, value in (("KID", kid), ("CTR", ctr)):
        if not 0 <= value <= MAX_U64:
            raise SFrameHeaderError(f"{name} {value} is outside 0..2^64-1")
    config = 0
    extension = b""
    if kid < 8:
        config |= kid << 4
    else:
        length = _minimal_length(kid)
        config |= 0x80 | (length - 1) << 4
        extension += kid.to_bytes(length, "big")
    if ctr < 8:
        config |= ctr
    else:
        length = _minimal_length(ctr)
        config |= 0x08 | (length - 1)
        extension += ctr.to_bytes(length, "big")
    return bytes((config,)) + extension


def _read_field(data: Buffer, offset: int, length: int, name: str) -> int:
    if len(data) < offset + length:
        raise SFrameHeaderError(f"header cut short: {name} needs {length} bytes, {len(data) - offset} left")
    value = int.from_bytes(data[offset : offset + length], "big")
    if value < 8 or _minimal_length(value) != length:
        raise SFrameHeaderError(f"{name} {value} is not in its minimal encoding ({length} bytes)")
    return value


def decode_header(data: Buffer) -> SFrameHeader:
    """Parses the header at the start of `data`; any encoding section 4.3 does not produce is refused."""
    if not data:
        raise SFrameHeaderError("empty frame: no SFrame header")
    config = data[0]
    offset = 1
    if config & 0x80:
        kid_length = ((config >> 4) & 0x07) + 1
        kid = _read_field(data, offset, kid_length, "KID")
        offset += kid_length
    else:
        kid = (config >> 4) & 0x07
    if config & 0x08:
        ctr_length = (config & 0x07) + 1
        ctr = _read_field(data, offset, ctr_length, "CTR")
        offset += ctr_length
    else:
        ctr = config & 0x07
    return SFrameHeader(kid, ctr, offset)


def key_label(suite: CipherSuite, kid: int) -> bytes:
    """The HKDF info of the sframe_key: the label, KID as 8 bytes, suite as 2 bytes (big-endian)."""
    return _KEY_LABEL + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")


def salt_label(suite: CipherSuite, kid: int) -> bytes:
    """The HKDF info of the sframe_salt, built like `key_label`."""
    return _SALT_LABEL + kid.to_bytes(8, "big") + suite.to_bytes(2, "big")


def derive_key_salt(suite: CipherSuite, kid: int, base_key: Buffer) -> tuple[bytes, bytes]:
    """(sframe_key, sframe_salt) for `base_key` under KID: HKDF-Extract with an empty salt, then Expand."""
    if not 0 <= kid <= MAX_U64:
        raise SFrameKeyError(f"KID {kid} is outside 0..2^64-1")
    params = suite.params
    extract = hmac.HMAC(b"", params.hash())
    extract.update(base_key)
    secret = extract.finalize()
    key = HKDFExpand(params.hash(), params.nk, key_label(suite, kid)).derive(secret)
    salt = HKDFExpand(params.hash(), params.nn, salt_label(suite, kid)).derive(secret)
    return key, salt


class _Aead(Protocol):
    def seal(self, nonce: bytes, aad: Buffer, plaintext: Buffer) -> bytes: ...

    def open(self, nonce: bytes, aad: Buffer, ciphertext: Buffer) -> bytes: ...


class _GcmAead:
    __slots__ = ("_gcm",)

    def __init__(self, key: bytes) -> None:
        self._gcm = AESGCM(key)

    def seal(self, nonce: bytes, aad: Buffer, plaintext: Buffer) -> bytes:
        return self._gcm.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, aad: Buffer, ciphertext: Buffer) -> bytes:
        try:
            return self._gcm.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise SFrameAuthError("authentication tag does not match") from None


class _CtrHmacAead:
    """The compound AEAD of section 4.5.1: AES-CTR, then HMAC over lengths, nonce, AAD and ciphertext."""

    __slots__ = ("_aes", "_auth_key", "_hash", "_nt")

    def __init__(self, key: bytes, params: SuiteParams) -> None:
        assert params.nka is not None
        self._aes = algorithms.AES(key[: params.nka])
        self._auth_key = key[params.nka :]
        self._hash = params.hash
        self._nt = params.nt

    def _tag(self, nonce: bytes, aad: Buffer, ciphertext: Buffer) -> bytes:
        mac = hmac.HMAC(self._auth_key, self._hash())
        mac.update(_CTR_HMAC_LENGTHS.pack(len(aad), len(ciphertext), self._nt))
        mac.update(nonce)
        mac.update(aad)
        mac.update(ciphertext)
        return mac.finalize()[: self._nt]

    def _ctr(self, nonce: bytes, data: Buffer) -> bytes:
        cipher = Cipher(self._aes, modes.CTR(nonce + _COUNTER_SUFFIX)).encryptor()
        return cipher.update(data) + cipher.finalize()

    def seal(self, nonce: bytes, aad: Buffer, plaintext: Buffer) -> bytes:
        ciphertext = self._ctr(nonce, plaintext)
        return ciphertext + self._tag(nonce, aad, ciphertext)

    def open(self, nonce: bytes, aad: Buffer, ciphertext: Buffer) -> bytes:
        if len(ciphertext) < self._nt:
            raise SFrameAuthError(f"ciphertext of {len(ciphertext)} bytes is shorter than its tag")
        inner = memoryview(ciphertext)[: len(ciphertext) - self._nt]
        if not bytes_eq(self._tag(nonce, aad, inner), bytes(ciphertext[len(inner) :])):
            raise SFrameAuthError("authentication tag does not match")
        return self._ctr(nonce, inner)


def _make_aead(suite: CipherSuite, key: bytes) -> _Aead:
    params = suite.params
    if len(key) != params.nk:
        raise SFrameKeyError(f"{suite.name} needs a {params.nk}-byte key, got {len(key)}")
    return _GcmAead(key) if params.nka is None else _CtrHmacAead(key, params)


def _check_nonce(suite: CipherSuite, nonce: bytes) -> None:
    if len(nonce) != suite.params.nn:
        raise SFrameKeyError(f"{suite.name} needs a {suite.params.nn}-byte nonce, got {len(nonce)}")


def aead_encrypt(suite: CipherSuite, key: bytes, nonce: bytes, aad: Buffer, plaintext: Buffer) -> bytes:
    """The suite's AEAD.Encrypt: ciphertext with its (possibly truncated) tag appended."""
    _check_nonce(suite, nonce)
    return _make_aead(suite, key).seal(nonce, aad, plaintext)


def aead_decrypt(suite: CipherSuite, key: bytes, nonce: bytes, aad: Buffer, ciphertext: Buffer) -> bytes:
    """The suite's AEAD.Decrypt; a wrong tag raises `SFrameAuthError`."""
    _check_nonce(suite, nonce)
    return _make_aead(suite, key).open(nonce, aad, ciphertext)


class SFrameKey:
    """One KID's derived key and salt, with its AEAD set up once: seals and opens whole SFrame ciphertexts.

    Stateless about counters: the caller guarantees a CTR is never sealed twice (`SFrameContext` does)."""

    __slots__ = ("_aead", "_salt", "kid", "suite")

    def __init__(self, suite: CipherSuite, kid: int, key: bytes, salt: bytes) -> None:
        if len(salt) != suite.params.nn:
            raise SFrameKeyError(f"{suite.name} needs a {suite.params.nn}-byte salt, got {len(salt)}")
        self.suite = suite
        self.kid = kid
        self._aead = _make_aead(suite, key)
        self._salt = int.from_bytes(salt, "big")

    @classmethod
    def derive(cls, suite: CipherSuite, kid: int, base_key: Buffer) -> SFrameKey:
        key, salt = derive_key_salt(suite, kid, base_key)
        return cls(suite, kid, key, salt)

    def nonce(self, ctr: int) -> bytes:
        """sframe_salt XOR CTR, as an Nn-byte big-endian string."""
        return (self._salt ^ ctr).to_bytes(self.suite.params.nn, "big")

    def seal(self, ctr: int, plaintext: Buffer, metadata: Buffer = b"") -> bytes:
        """header || AEAD.Encrypt(sframe_key, nonce, header || metadata, plaintext)."""
        header = encode_header(self.kid, ctr)
        return header + self._aead.seal(self.nonce(ctr), header + metadata, plaintext)

    def open(self, header: SFrameHeader, frame: Buffer, metadata: Buffer = b"") -> bytes:
        """The plaintext of `frame`, whose header (already decoded, with this key's KID) is `header`."""
        if header.kid != self.kid:
            raise SFrameUnknownKeyError(header.kid, f"this key is KID {self.kid}")
        view = memoryview(frame)
        aad = bytes(view[: header.size]) + metadata
        return self._aead.open(self.nonce(header.ctr), aad, view[header.size :])


class _ReplayWindow:
    """Which of the last `size` CTR values (up to the highest accepted) were accepted.

    Slot `ctr % size` holds the last CTR accepted there, so a CTR inside the window was seen exactly when its
    slot holds it: any other value in that slot differs from it by a multiple of `size`."""

    __slots__ = ("_highest", "_seen", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._highest = -1
        self._seen = [-1] * size

    def check(self, ctr: int) -> None:
        if ctr + self._size <= self._highest:
            raise SFrameReplayError(f"CTR {ctr} is older than the replay window (newest {self._highest})")
        if self._seen[ctr % self._size] == ctr:
            raise SFrameReplayError(f"CTR {ctr} was already accepted")

    def accept(self, ctr: int) -> None:
        self._seen[ctr % self._size] = ctr
        self._highest = max(self._highest, ctr)


class _Sending:
    __slots__ = ("key", "next_ctr")

    def __init__(self, key: SFrameKey) -> None:
        self.key = key
        self.next_ctr = 0


class _Receiving:
    __slots__ = ("key", "window")

    def __init__(self, key: SFrameKey, window: int) -> None:
        self.key = key
        self.window = _ReplayWindow(window)


class SFrameContext:
    """The keys of one SFrame session (one cipher suite), by KID, as section 4.4.1 prescribes.

    A key is added for encryption (this client sends with it; its CTR starts at 0 and only goes up) or for
    decryption (another sender's; its replay window rejects a CTR accepted before or too old), never both.
    A retired KID can never be added again: a fresh key must have a fresh KID, so no nonce is ever reused and
    no frame from before a rotation is accepted after it. Not thread-safe; one context per event loop.
    """

    __slots__ = ("_receiving", "_replay_window", "_retired", "_sending", "suite")

    def __init__(self, suite: CipherSuite, *, replay_window: int = DEFAULT_REPLAY_WINDOW) -> None:
        if replay_window < 1:
            raise SFrameKeyError(f"replay window of {replay_window} CTR values is below 1")
        self.suite = suite
        self._replay_window = replay_window
        self._sending: dict[int, _Sending] = {}
        self._receiving: dict[int, _Receiving] = {}
        self._retired: set[int] = set()

    def _new_key(self, kid: int, base_key: Buffer) -> SFrameKey:
        if kid in self._sending or kid in self._receiving:
            raise SFrameKeyError(f"KID {kid} already has a key")
        if kid in self._retired:
            raise SFrameKeyError(f"KID {kid} was retired; a new key needs a new KID")
        if len(base_key) < MIN_BASE_KEY_SIZE:
            raise SFrameKeyError(f"base key of {len(base_key)} bytes is under {MIN_BASE_KEY_SIZE}")
        return SFrameKey.derive(self.suite, kid, base_key)

    def add_encryption_key(self, kid: int, base_key: Buffer) -> None:
        """This client will send under KID with `base_key`; no other sender may hold this base key."""
        self._sending[kid] = _Sending(self._new_key(kid, base_key))

    def add_decryption_key(self, kid: int, base_key: Buffer) -> None:
        """Frames under KID (another sender's) can be opened from now on."""
        self._receiving[kid] = _Receiving(self._new_key(kid, base_key), self._replay_window)

    def retire_key(self, kid: int) -> None:
        """Forgets KID's key for good; its frames fail with `SFrameUnknownKeyError` from now on."""
        if self._sending.pop(kid, None) is None and self._receiving.pop(kid, None) is None:
            raise SFrameKeyError(f"KID {kid} has no key to retire")
        self._retired.add(kid)

    def has_key(self, kid: int) -> bool:
        return kid in self._sending or kid in self._receiving

    def encrypt(self, kid: int, plaintext: Buffer, metadata: Buffer = b"") -> bytes:
        """Seals one frame under KID's sending key with its next CTR."""
        sending = self._sending.get(kid)
        if sending is None:
            raise SFrameKeyError(f"KID {kid} is not an encryption key of this context")
        ctr = sending.next_ctr
        if ctr > MAX_U64:
            raise SFrameKeyError(f"KID {kid} has used every CTR value; rotate to a new key")
        sending.next_ctr = ctr + 1
        return sending.key.seal(ctr, plaintext, metadata)

    def decrypt(self, frame: Buffer, metadata: Buffer = b"") -> Decrypted:
        """Opens one frame; its CTR counts as seen only when it authenticates."""
        header = decode_header(frame)
        receiving = self._receiving.get(header.kid)
        if receiving is None:
            if header.kid in self._sending:
                reason = "it is this client's own encryption key"
            elif header.kid in self._retired:
                reason = "the key was retired"
            else:
                reason = "no key was given for it"
            raise SFrameUnknownKeyError(header.kid, reason)
        receiving.window.check(header.ctr)
        plaintext = receiving.key.open(header, frame, metadata)
        receiving.window.accept(header.ctr)
        return Decrypted(header.kid, header.ctr, plaintext)
