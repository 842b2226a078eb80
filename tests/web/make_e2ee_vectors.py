"""Writes tests/data/e2ee-vectors.json (and its copy client/web/test/vectors/e2ee-vectors.json): the key
scheme of docs/E2EE.md computed by the Python implementation from fixed inputs.

Fixed private scalars give identities, HELLO bytes, both wrap keys of the pair and their safety number; a
MEDIA_KEY sealed with a fixed nonce; one media frame whose payload is sealed with SFrame under the media key
it carries, with the first 24 header bytes as metadata; and key messages every implementation must refuse,
each with the refusal kind. The browser's keymessages.ts / e2ee.ts must reproduce every byte and refusal
(Vitest); `test_e2ee_vectors.py` checks that the checked-in files are what this script writes today.

Run `.venv/bin/python tests/web/make_e2ee_vectors.py` after changing darktower.client.keymessages or e2ee.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from darktower.client.e2ee import METADATA_SIZE
from darktower.client.keymessages import (
    DEFAULT_SUITE,
    VERSION,
    Hello,
    Identity,
    KeyMessageError,
    MediaKey,
    decode_key_message,
    encode_hello,
    load_public_key,
    media_key_aad,
    open_media_key,
    safety_number,
    seal_media_key,
    wrap_key,
)
from darktower.client.sframe import SFrameKey
from darktower.proto.frame import HEADER_SIZE, encode_frame

ROOT = Path(__file__).resolve().parents[2]
VECTORS_PATH = ROOT / "tests" / "data" / "e2ee-vectors.json"
WEB_COPY_PATH = ROOT / "client" / "web" / "test" / "vectors" / "e2ee-vectors.json"

SENDER_ID = "alice-\u00e9"
"""Not ASCII, so the AAD's UTF-8 lengths are exercised."""
RECIPIENT_ID = "bob"


def _bytes(seed: str, size: int) -> bytes:
    """Deterministic filler, so the file diffs cleanly."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _scalar(seed: str) -> bytes:
    """A valid P-256 private scalar (well below the group order)."""
    return b"\x00" + _bytes(seed, 31)


def _identity(name: str) -> tuple[bytes, Identity]:
    d = _scalar(f"identity {name}")
    return d, Identity.from_scalar(d)


def refusal_of(payload: bytes, wrap: bytes) -> str | None:
    """The refusal kind of `payload` received by RECIPIENT_ID from SENDER_ID (None: accepted)."""
    try:
        message = decode_key_message(payload)
        if isinstance(message, Hello):
            load_public_key(message.public_key)
        else:
            open_media_key(wrap, SENDER_ID, RECIPIENT_ID, message)
    except KeyMessageError as exc:
        return exc.code
    return None


def _refused(name: str, payload: bytes, wrap: bytes, expected: str) -> dict[str, str]:
    refusal = refusal_of(payload, wrap)
    if refusal != expected:
        raise AssertionError(f"{name}: the Python implementation says {refusal}, not {expected}")
    return {"name": name, "payload": payload.hex(), "refusal": refusal}


def build_vectors() -> dict[str, Any]:
    """Every vector; deterministic, so the file diffs cleanly."""
    sender_d, sender = _identity("sender")
    recipient_d, recipient = _identity("recipient")
    wrap_out = wrap_key(sender, recipient.public_key, sender.public_key, recipient.public_key)
    assert wrap_out == wrap_key(recipient, sender.public_key, sender.public_key, recipient.public_key)
    wrap_back = wrap_key(recipient, sender.public_key, recipient.public_key, sender.public_key)
    media_key = MediaKey(DEFAULT_SUITE, 5, _bytes("base key", 32))
    nonce = _bytes("wrap nonce", 12)
    sealed = seal_media_key(wrap_out, SENDER_ID, RECIPIENT_ID, media_key, nonce)

    plaintext = b"DTe2ee marker " + _bytes("frame payload", 186)
    header = encode_frame(
        track_id=7, group=3, object_seq=12, capture_us=1_764_000_000_123_456, payload=b"", keyframe=False
    )[:HEADER_SIZE]
    ctr = 9
    sframe = SFrameKey.derive(media_key.suite, media_key.kid, media_key.base_key).seal(
        ctr, plaintext, header[:METADATA_SIZE]
    )
    frame = header[:METADATA_SIZE] + len(sframe).to_bytes(4, "big") + sframe

    hello = encode_hello(sender.public_key)
    bad_point = bytes((0x04,)) + b"\x00" * 63 + b"\x07"
    odd_suite = AESGCM(wrap_out).encrypt(
        nonce,
        b"\x00\x09" + (5).to_bytes(8, "big") + media_key.base_key,
        media_key_aad(SENDER_ID, RECIPIENT_ID),
    )
    wrong_ids = seal_media_key(wrap_out, RECIPIENT_ID, SENDER_ID, media_key, nonce)
    cases = [
        ("empty", b"", "malformed"),
        ("version only", bytes((VERSION,)), "malformed"),
        ("version 2", bytes((2,)) + hello[1:], "malformed"),
        ("unknown type 3", bytes((VERSION, 3)) + hello[2:], "malformed"),
        ("HELLO cut short", hello[:-1], "malformed"),
        ("HELLO with a trailing byte", hello + b"\x00", "malformed"),
        ("MEDIA_KEY cut short", sealed[:-1], "malformed"),
        ("MEDIA_KEY with a trailing byte", sealed + b"\x00", "malformed"),
        ("HELLO with a compressed-point prefix", hello[:2] + b"\x02" + hello[3:], "bad_identity"),
        ("HELLO with a point off the curve", hello[:2] + bad_point, "bad_identity"),
        (
            "MEDIA_KEY with a flipped ciphertext bit",
            sealed[:20] + bytes((sealed[20] ^ 1,)) + sealed[21:],
            "auth",
        ),
        ("MEDIA_KEY with a flipped nonce bit", sealed[:2] + bytes((sealed[2] ^ 1,)) + sealed[3:], "auth"),
        ("MEDIA_KEY sealed for the ids swapped", wrong_ids, "auth"),
        ("MEDIA_KEY of cipher suite 9", bytes((VERSION, 2)) + nonce + odd_suite, "unsupported_suite"),
    ]
    return {
        "comment": "Written by tests/web/make_e2ee_vectors.py from darktower.client.keymessages; do not edit.",
        "sender": {
            "participant_id": SENDER_ID,
            "private_scalar": sender_d.hex(),
            "public_key": sender.public_key.hex(),
            "hello": hello.hex(),
        },
        "recipient": {
            "participant_id": RECIPIENT_ID,
            "private_scalar": recipient_d.hex(),
            "public_key": recipient.public_key.hex(),
            "hello": encode_hello(recipient.public_key).hex(),
        },
        "ecdh_x": sender.shared_secret(recipient.public_key).hex(),
        "wrap_key_sender_to_recipient": wrap_out.hex(),
        "wrap_key_recipient_to_sender": wrap_back.hex(),
        "safety_number": safety_number(sender.public_key, recipient.public_key),
        "media_key": {
            "cipher_suite": media_key.suite.value,
            "kid": str(media_key.kid),
            "base_key": media_key.base_key.hex(),
            "nonce": nonce.hex(),
            "aad": media_key_aad(SENDER_ID, RECIPIENT_ID).hex(),
            "message": sealed.hex(),
        },
        "media_frame": {
            "comment": "payload = SFrame under media_key (KID = its kid), metadata = the header's first 24 bytes",
            "ctr": str(ctr),
            "metadata": header[:METADATA_SIZE].hex(),
            "plaintext": plaintext.hex(),
            "frame": frame.hex(),
        },
        "refused": [_refused(name, payload, wrap_out, kind) for name, payload, kind in cases],
    }


def render() -> str:
    return json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    text = render()
    for path in (VECTORS_PATH, WEB_COPY_PATH):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
