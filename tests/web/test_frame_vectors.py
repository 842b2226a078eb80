"""The frame format agrees byte for byte between Python (darktower.proto.frame) and the browser (frame.ts).

Both directions: the vectors Python wrote for the Vitest suite are current, and every frame frame.ts wrote
(client/web/test/vectors/frames-ts.json, kept current by a Vitest test) decodes here to the fields it was
encoded from and re-encodes to the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from darktower.proto.frame import decode_frame, encode_frame

HERE = Path(__file__).resolve().parent
TS_VECTORS = HERE.parents[1] / "client" / "web" / "test" / "vectors" / "frames-ts.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_frame_vectors", HERE / "make_frame_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ts_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(TS_VECTORS.read_text(encoding="utf-8"))["valid"]
    return vectors


def test_checked_in_python_vectors_are_what_the_codec_writes_today() -> None:
    generator = _load_generator()
    assert generator.VECTORS_PATH.read_text(encoding="utf-8") == generator.render(), (
        "client/web/test/vectors/frames.json is stale: run .venv/bin/python tests/web/make_frame_vectors.py"
    )


def test_typescript_wrote_vectors_for_every_interesting_field() -> None:
    vectors = _ts_vectors()
    assert len(vectors) >= 5
    assert any(vector["fields"]["keyframe"] for vector in vectors)
    assert any(vector["fields"]["voice_activity"] for vector in vectors)
    assert any(int(vector["fields"]["capture_us"]) > 2**53 for vector in vectors)


@pytest.mark.parametrize("vector", _ts_vectors(), ids=lambda vector: vector["name"])
def test_frames_encoded_by_typescript_decode_to_their_fields(vector: dict[str, Any]) -> None:
    header, payload = decode_frame(bytes.fromhex(vector["hex"]))
    fields = vector["fields"]
    assert bytes(payload).hex() == vector["payload_hex"]
    assert (header.track_id, header.group, header.object_seq, header.capture_us) == (
        fields["track_id"],
        fields["group"],
        fields["object_seq"],
        int(fields["capture_us"]),
    )
    assert (header.keyframe, header.spatial_layer, header.temporal_layer) == (
        fields["keyframe"],
        fields["spatial_layer"],
        fields["temporal_layer"],
    )
    assert (header.level_dbov, header.voice_activity) == (fields["level_dbov"], fields["voice_activity"])


@pytest.mark.parametrize("vector", _ts_vectors(), ids=lambda vector: vector["name"])
def test_python_encodes_the_typescript_fields_to_the_same_bytes(vector: dict[str, Any]) -> None:
    fields = dict(vector["fields"])
    fields["capture_us"] = int(fields["capture_us"])
    assert encode_frame(payload=bytes.fromhex(vector["payload_hex"]), **fields).hex() == vector["hex"]
