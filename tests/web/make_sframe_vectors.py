"""Writes client/web/test/vectors/sframe-python.json: SFrame frames sealed by the Python implementation.

The browser's `sframe.ts` must open every frame to the same KID, CTR and plaintext, must seal the same inputs
to the same bytes, and must refuse every rejected case with the same error class; the Vitest suite checks
that, and `test_sframe_vectors.py` checks that the checked-in file is what this script writes today.

Run `.venv/bin/python tests/web/make_sframe_vectors.py` after changing darktower.client.sframe.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from darktower.client.sframe import (
    MAX_U64,
    CipherSuite,
    SFrameAuthError,
    SFrameContext,
    SFrameError,
    SFrameHeaderError,
    SFrameKey,
    SFrameReplayError,
    SFrameUnknownKeyError,
)

VECTORS_PATH = (
    Path(__file__).resolve().parents[2] / "client" / "web" / "test" / "vectors" / "sframe-python.json"
)

_ERRORS: dict[type[SFrameError], str] = {
    SFrameHeaderError: "header",
    SFrameUnknownKeyError: "unknown_key",
    SFrameAuthError: "auth",
    SFrameReplayError: "replay",
}


def _bytes(seed: str, size: int) -> bytes:
    """Deterministic filler, so the file diffs cleanly."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _frame(
    suite: CipherSuite, name: str, kid: int, ctr: int, plaintext: bytes, metadata: bytes
) -> dict[str, Any]:
    base_key = _bytes(f"base key {kid}", 16 if suite.params.nk <= 16 else 32)
    return {
        "name": f"{suite.name}: {name}",
        "cipher_suite": suite.value,
        "kid": str(kid),
        "ctr": str(ctr),
        "base_key": base_key.hex(),
        "metadata": metadata.hex(),
        "plaintext": plaintext.hex(),
        "frame": SFrameKey.derive(suite, kid, base_key).seal(ctr, plaintext, metadata).hex(),
    }


def _frames() -> list[dict[str, Any]]:
    frames = []
    for suite in CipherSuite:
        frames += [
            _frame(suite, "small KID, first audio frame", 3, 0, _bytes("audio", 100), b""),
            _frame(
                suite, "video frame with metadata", 1000, 7, _bytes("video", 1500), _bytes("metadata", 28)
            ),
            _frame(suite, "empty plaintext", 8, 8, b"", b"m"),
            _frame(suite, "KID and CTR beyond 2^53", 2**60 + 5, 2**56 + 3, _bytes("late", 33), b""),
            _frame(suite, "largest KID and CTR", MAX_U64, MAX_U64, b"\x00", _bytes("max", 3)),
        ]
    return frames


def _rejected() -> list[dict[str, Any]]:
    """Frames a receiver holding `kid`'s key must refuse, after first accepting `accept_first`."""
    suite = CipherSuite.AES_128_CTR_HMAC_SHA256_80
    base_key = _bytes("rejected", 16)
    sender = SFrameContext(suite)
    sender.add_encryption_key(42, base_key)
    good = [sender.encrypt(42, _bytes(f"rejected {n}", 50), b"meta") for n in range(3)]
    stranger = SFrameKey.derive(suite, 43, base_key).seal(0, b"x")
    cases: list[tuple[str, list[bytes], bytes, bytes]] = [
        ("a flipped ciphertext bit", [], good[0][:5] + bytes([good[0][5] ^ 1]) + good[0][6:], b"meta"),
        ("a flipped tag bit", [], good[0][:-1] + bytes([good[0][-1] ^ 0x80]), b"meta"),
        ("other metadata", [], good[0], b"atem"),
        ("a frame cut to its header", [], good[0][:2], b"meta"),
        ("a replayed frame", [good[1]], good[1], b"meta"),
        ("a frame older than the window", [good[2]], good[0], b"meta"),
        ("an unknown KID", [], stranger, b""),
        ("an empty frame", [], b"", b""),
        ("a non-minimal CTR", [], b"\x89\x2a\x00\x05" + good[0][2:], b"meta"),
        ("a truncated extended KID", [], b"\x90\x00", b""),
    ]
    vectors = []
    for name, accept_first, frame, metadata in cases:
        receiver = SFrameContext(suite, replay_window=2)
        receiver.add_decryption_key(42, base_key)
        for earlier in accept_first:
            receiver.decrypt(earlier, metadata)
        try:
            receiver.decrypt(frame, metadata)
        except SFrameError as error:
            kind = _ERRORS[type(error)]
        else:
            raise AssertionError(f"the Python implementation accepted {name}")
        vectors.append(
            {
                "name": name,
                "cipher_suite": suite.value,
                "kid": "42",
                "base_key": base_key.hex(),
                "replay_window": 2,
                "accept_first": [earlier.hex() for earlier in accept_first],
                "frame": frame.hex(),
                "metadata": metadata.hex(),
                "error": kind,
            }
        )
    return vectors


def build_vectors() -> dict[str, Any]:
    """Every vector, computed by darktower.client.sframe; deterministic, so the file diffs cleanly."""
    return {
        "comment": "Written by tests/web/make_sframe_vectors.py from darktower.client.sframe; do not edit.",
        "frames": _frames(),
        "rejected": _rejected(),
    }


def render() -> str:
    return json.dumps(build_vectors(), indent=2) + "\n"


def main() -> int:
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {VECTORS_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
