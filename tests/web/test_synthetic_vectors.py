"""The browser recognises the bot's synthetic media from vectors that darktower.client.media wrote today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_checked_in_synthetic_vectors_are_what_the_bot_sends_today() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_synthetic_vectors", HERE / "make_synthetic_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.VECTORS_PATH.read_text(encoding="utf-8") == generator.render(), (
        "client/web/test/vectors/synthetic.json is stale: run .venv/bin/python tests/web/make_synthetic_vectors.py"
    )
