"""What only the SQLite store has: a file. One that is not a database, or cannot be created, is a StoreError."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktower.control.sqlite_store import SqliteMeetingStore
from darktower.control.store import StoreError


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"cannot use meeting database .*db.sqlite3: file is not a database"):
        await SqliteMeetingStore.open(path)


async def test_an_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open meeting database"):
        await SqliteMeetingStore.open(blocker / "db.sqlite3")
