"""Writes client/web/test/vectors/synthetic.json: frames of `darktower bot`'s synthetic media, made by
darktower.client.media, so the browser's `synthetic.ts` recognises exactly what the bot sends.

Each vector is a whole frame with the publisher it came from; the Vitest suite checks that `synthetic.ts`
reads the echo back and accepts the frame for that publisher only. `test_synthetic_vectors.py` checks that
the checked-in file is what this script writes today.

Run `.venv/bin/python tests/web/make_synthetic_vectors.py` after changing the synthetic media format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from darktower.client.media import MediaKind, synthetic_frame
from darktower.proto.frame import MAX_U32, MAX_U64

VECTORS_PATH = Path(__file__).resolve().parents[2] / "client" / "web" / "test" / "vectors" / "synthetic.json"

_FRAMES: list[tuple[str, str, MediaKind, int, int, int, int]] = [
    ("video keyframe", "pA-bot_123456", "video", 4, 0, 0, 1_767_225_600_000_000),
    ("video delta frame", "pA-bot_123456", "video", 4, 7, 12, 1_767_225_614_400_000),
    ("audio packet", "pA-bot_123456", "audio", 5, 0, 301, 1_767_225_606_020_000),
    ("non-ascii publisher id", "bötß", "audio", 9, 0, 0, 5),
    ("every field at its maximum", "x" * 255, "video", MAX_U32, MAX_U32, 0, MAX_U64),
]


def build_vectors() -> dict[str, Any]:
    """Every vector; deterministic, so the file diffs cleanly."""
    vectors = []
    for name, participant_id, kind, track_id, group, object_seq, capture_us in _FRAMES:
        frame = synthetic_frame(
            participant_id=participant_id,
            kind=kind,
            track_id=track_id,
            group=group,
            object_seq=object_seq,
            capture_us=capture_us,
        )
        vectors.append(
            {
                "name": name,
                "participant_id": participant_id,
                "kind": kind,
                "track_id": track_id,
                "group": group,
                "object_seq": object_seq,
                "capture_us": str(capture_us),
                "hex": frame.hex(),
            }
        )
    return {
        "comment": "Written by tests/web/make_synthetic_vectors.py from darktower.client.media; do not edit.",
        "frames": vectors,
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
