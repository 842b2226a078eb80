"""Writes client/web/test/vectors/frames.json: media frame test vectors made by the Python codec.

The browser's `frame.ts` must decode every valid vector to the same fields and encode those fields to the
same bytes, and must refuse every invalid input with `FrameError`; the Vitest suite checks that, and
`test_frame_vectors.py` checks that the checked-in file is what this script writes today.

Run `.venv/bin/python tests/web/make_frame_vectors.py` after changing the frame format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from darktower.proto.frame import (
    HEADER,
    MAX_U32,
    MAX_U64,
    FrameError,
    FrameReader,
    decode_frame,
    encode_frame,
)

VECTORS_PATH = Path(__file__).resolve().parents[2] / "client" / "web" / "test" / "vectors" / "frames.json"

_VALID: list[tuple[str, dict[str, Any]]] = [
    ("empty audio frame", {"track_id": 1, "group": 0, "object_seq": 0, "capture_us": 0, "payload": b""}),
    (
        "opus packet with voice activity",
        {
            "track_id": 7,
            "group": 0,
            "object_seq": 4242,
            "capture_us": 1_767_225_600_000_000,
            "payload": bytes(range(40)),
            "level_dbov": 23,
            "voice_activity": True,
        },
    ),
    (
        "video keyframe opening a group",
        {
            "track_id": 2,
            "group": 17,
            "object_seq": 0,
            "capture_us": 1_767_225_600_123_456,
            "payload": b"\x9d\x01\x2a" + bytes(61),
            "keyframe": True,
        },
    ),
    (
        "video delta frame on a higher layer",
        {
            "track_id": 2,
            "group": 17,
            "object_seq": 29,
            "capture_us": 1_767_225_601_090_123,
            "payload": b"\xff" * 300,
            "spatial_layer": 2,
            "temporal_layer": 3,
        },
    ),
    (
        "every field at its maximum",
        {
            "track_id": MAX_U32,
            "group": MAX_U32,
            "object_seq": MAX_U32,
            "capture_us": MAX_U64,
            "payload": b"\x00\x01",
            "keyframe": True,
            "spatial_layer": 15,
            "temporal_layer": 15,
            "level_dbov": 0,
            "voice_activity": True,
        },
    ),
]

_BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("track id over 32 bits", {"track_id": MAX_U32 + 1}, "track_id"),
    ("negative group", {"group": -1}, "group"),
    ("object sequence over 32 bits", {"object_seq": MAX_U32 + 1}, "object_seq"),
    ("capture time over 64 bits", {"capture_us": MAX_U64 + 1}, "capture_us"),
    ("spatial layer over a nibble", {"spatial_layer": 16}, "spatial_layer"),
    ("temporal layer over a nibble", {"temporal_layer": 16}, "temporal_layer"),
    ("audio level over 127", {"level_dbov": 128}, "level_dbov"),
]


def _raw_header(**overrides: int) -> bytes:
    fields = {
        "version": 1,
        "flags": 0,
        "layers": 0,
        "audio_level": 127,
        "track_id": 3,
        "group": 0,
        "capture_us": 5,
        "object_seq": 0,
        "payload_length": 0,
    }
    fields.update(overrides)
    return HEADER.pack(*fields.values())


def _valid_vectors() -> list[dict[str, Any]]:
    vectors = []
    for name, spec in _VALID:
        frame = encode_frame(**spec)
        header, payload = decode_frame(frame)
        vectors.append(
            {
                "name": name,
                "fields": {
                    "track_id": spec["track_id"],
                    "group": spec["group"],
                    "object_seq": spec["object_seq"],
                    "capture_us": str(spec["capture_us"]),
                    "keyframe": header.keyframe,
                    "spatial_layer": header.spatial_layer,
                    "temporal_layer": header.temporal_layer,
                    "level_dbov": header.level_dbov,
                    "voice_activity": header.voice_activity,
                },
                "header": {
                    "version": header.version,
                    "flags": header.flags,
                    "layers": header.layers,
                    "audio_level": header.audio_level,
                    "payload_length": header.payload_length,
                },
                "payload_hex": bytes(payload).hex(),
                "hex": frame.hex(),
            }
        )
    return vectors


def _expect_error(data: bytes, max_payload: int) -> None:
    try:
        decode_frame(data, max_payload)
    except FrameError:
        return
    raise AssertionError(f"the Python codec accepted an invalid vector: {data.hex()}")


def _invalid_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, bytes, int, str]] = [
        ("empty datagram", b"", MAX_U32, "truncated header"),
        ("header cut short", _raw_header()[:27], MAX_U32, "truncated header"),
        ("version 0", _raw_header(version=0), MAX_U32, "unsupported frame version"),
        ("version 2", _raw_header(version=2), MAX_U32, "unsupported frame version"),
        ("reserved flag bit 1", _raw_header(flags=0x02), MAX_U32, "reserved flag bits"),
        ("all reserved flag bits", _raw_header(flags=0xFF), MAX_U32, "reserved flag bits"),
        ("payload over the limit", _raw_header(payload_length=1201) + bytes(1201), 1200, "over the limit"),
        ("payload shorter than declared", _raw_header(payload_length=10) + bytes(9), MAX_U32, "header says"),
        (
            "trailing bytes after the payload",
            _raw_header(payload_length=2) + bytes(3),
            MAX_U32,
            "header says",
        ),
    ]
    vectors = []
    for name, data, max_payload, match in cases:
        _expect_error(data, max_payload)
        vectors.append({"name": name, "hex": data.hex(), "max_payload": max_payload, "match": match})
    return vectors


def _bad_field_vectors() -> list[dict[str, Any]]:
    base = {"track_id": 1, "group": 0, "object_seq": 0, "capture_us": 0}
    vectors = []
    for name, override, field in _BAD_FIELDS:
        spec = {**base, **override}
        try:
            encode_frame(payload=b"", **spec)
        except FrameError:
            pass
        else:
            raise AssertionError(f"the Python codec encoded out-of-range fields: {spec}")
        fields = {key: (str(value) if key == "capture_us" else value) for key, value in spec.items()}
        vectors.append({"name": name, "fields": fields, "match": field})
    return vectors


def _stream_vectors() -> list[dict[str, Any]]:
    """Whole video groups split into chunks at awkward places, as a stream delivers them."""
    group = [
        encode_frame(
            track_id=9,
            group=3,
            object_seq=seq,
            capture_us=1_000 + seq,
            payload=bytes([seq]) * (seq * 5),
            keyframe=seq == 0,
        )
        for seq in range(4)
    ]
    stream = b"".join(group)
    splits = [1, 27, 28, 29, 40, len(stream) - 1]
    chunks = [stream[a:b] for a, b in zip([0, *splits], [*splits, len(stream)], strict=True)]
    reader = FrameReader()
    parsed = [frame for chunk in chunks for _, frame in reader.feed(chunk)]
    reader.close()
    assert parsed == group
    truncated = stream[:-3]
    return [
        {
            "name": "a group in awkward chunks",
            "chunks": [chunk.hex() for chunk in chunks],
            "frames": [frame.hex() for frame in group],
            "error_at_close": None,
        },
        {
            "name": "a stream that ends inside a frame",
            "chunks": [truncated.hex()],
            "frames": [frame.hex() for frame in group[:-1]],
            "error_at_close": "stream ended inside a frame",
        },
    ]


def build_vectors() -> dict[str, Any]:
    """Every vector, computed by the Python codec; deterministic, so the file diffs cleanly."""
    return {
        "comment": "Written by tests/web/make_frame_vectors.py from darktower.proto.frame; do not edit.",
        "valid": _valid_vectors(),
        "invalid": _invalid_vectors(),
        "bad_fields": _bad_field_vectors(),
        "streams": _stream_vectors(),
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
