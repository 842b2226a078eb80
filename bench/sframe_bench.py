"""SFrame (RFC 9605) cost per frame in the Python client: encrypt and decrypt, µs per frame, per cipher suite.

Frame sizes follow the synthetic media of darktower.client.media: 100-byte audio (Opus at 50 packets/s),
4 KB video delta frames and 25 KB video keyframes, each with 28 bytes of metadata (a frame header). Every
figure runs through `SFrameContext.encrypt` / `SFrameContext.decrypt` (header, key lookup, AEAD, replay
window: everything a client pays) and is the best of `--repeats` timed runs of `--frames` frames, so other
processes on the machine inflate it least. The last column is the share of one core that encrypting a stream
of such frames at its rate (50/s audio, 30/s video) would take.

    python bench/sframe_bench.py [--frames 2000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from darktower.client.sframe import CipherSuite, SFrameContext

SIZES = (("audio 100 B", 100, 50), ("video 4 KB", 4_000, 30), ("video 25 KB", 25_000, 30))
"""(label, bytes, frames per second of such a stream)."""


def _best_us(run: Callable[[], None], frames: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        run()
        best = min(best, (time.perf_counter_ns() - start) / 1_000 / frames)
    return best


def measure(suite: CipherSuite, size: int, frames: int, repeats: int) -> tuple[float, float]:
    """(encrypt µs, decrypt µs) per frame of `size` bytes under `suite`."""
    plaintext = os.urandom(size)
    metadata = os.urandom(28)
    base_key = os.urandom(32)
    sender = SFrameContext(suite)
    sender.add_encryption_key(1, base_key)

    def encrypt() -> None:
        for _ in range(frames):
            sender.encrypt(1, plaintext, metadata)

    encrypt_us = _best_us(encrypt, frames, repeats)
    batch = [sender.encrypt(1, plaintext, metadata) for _ in range(frames)]
    receivers: list[SFrameContext] = []
    for _ in range(repeats):
        receiver = SFrameContext(suite, replay_window=frames)
        receiver.add_decryption_key(1, base_key)
        receivers.append(receiver)
    pending = iter(receivers)

    def decrypt() -> None:
        receiver = next(pending)
        for frame in batch:
            receiver.decrypt(frame, metadata)

    decrypt_us = _best_us(decrypt, frames, repeats)
    return encrypt_us, decrypt_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    results = []
    for suite in CipherSuite:
        for label, size, rate in SIZES:
            encrypt_us, decrypt_us = measure(suite, size, args.frames, args.repeats)
            results.append(
                {
                    "suite": suite.name,
                    "frame": label,
                    "encrypt_us": round(encrypt_us, 2),
                    "decrypt_us": round(decrypt_us, 2),
                    "encrypt_core_percent": round(encrypt_us * rate / 10_000, 3),
                }
            )
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}))
        return 0
    print(f"SFrame per frame, Python {sys.version.split()[0]}, best of {args.repeats} x {args.frames} frames")
    print(f"{'suite':<28} {'frame':<12} {'encrypt µs':>11} {'decrypt µs':>11} {'core % (send)':>14}")
    for row in results:
        print(
            f"{row['suite']:<28} {row['frame']:<12} {row['encrypt_us']:>11.2f} {row['decrypt_us']:>11.2f}"
            f" {row['encrypt_core_percent']:>14.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
