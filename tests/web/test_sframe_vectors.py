"""SFrame agrees byte for byte between Python (darktower.client.sframe) and the browser (sframe.ts).

Both directions: the frames Python sealed for the Vitest suite are current, and every frame sframe.ts sealed
(client/web/test/vectors/sframe-ts.json, kept current by a Vitest test) opens here to the KID, CTR and
plaintext it was sealed from, and Python seals the same inputs to the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from darktower.client.sframe import MAX_U64, CipherSuite, Decrypted, SFrameContext, SFrameKey

HERE = Path(__file__).resolve().parent
TS_VECTORS = HERE.parents[1] / "client" / "web" / "test" / "vectors" / "sframe-ts.json"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sframe_vectors", HERE / "make_sframe_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ts_frames() -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads(TS_VECTORS.read_text(encoding="utf-8"))["frames"]
    return frames


def test_checked_in_python_vectors_are_what_sframe_writes_today() -> None:
    generator = _load_generator()
    assert generator.VECTORS_PATH.read_text(encoding="utf-8") == generator.render(), (
        "client/web/test/vectors/sframe-python.json is stale: run .venv/bin/python tests/web/make_sframe_vectors.py"
    )


def test_typescript_sealed_frames_for_every_suite_and_the_widest_values() -> None:
    frames = _ts_frames()
    assert {frame["cipher_suite"] for frame in frames} == {suite.value for suite in CipherSuite}
    assert any(int(frame["kid"]) > 2**53 and int(frame["ctr"]) > 2**53 for frame in frames)
    assert any(int(frame["kid"]) == MAX_U64 == int(frame["ctr"]) for frame in frames)
    assert any(frame["metadata"] for frame in frames)


@pytest.mark.parametrize("vector", _ts_frames(), ids=lambda vector: vector["name"])
def test_frames_sealed_by_typescript_open_here(vector: dict[str, Any]) -> None:
    suite = CipherSuite(vector["cipher_suite"])
    kid, ctr = int(vector["kid"]), int(vector["ctr"])
    base_key, metadata = bytes.fromhex(vector["base_key"]), bytes.fromhex(vector["metadata"])
    frame, plaintext = bytes.fromhex(vector["frame"]), bytes.fromhex(vector["plaintext"])
    context = SFrameContext(suite)
    context.add_decryption_key(kid, base_key)
    assert context.decrypt(frame, metadata) == Decrypted(kid, ctr, plaintext)
    assert SFrameKey.derive(suite, kid, base_key).seal(ctr, plaintext, metadata) == frame
