"""The migration list itself: numbered 1, 2, 3, ... with statements for both dialects."""

from __future__ import annotations

import pytest

from darktower.control.migrations import MIGRATIONS, Dialect, Migration, MigrationReport, check_sequence


def test_the_shipped_migrations_are_numbered_and_cover_both_dialects() -> None:
    check_sequence(MIGRATIONS)
    for migration in MIGRATIONS:
        assert migration.statements(Dialect.SQLITE) == migration.sqlite
        assert migration.statements(Dialect.POSTGRES) == migration.postgres


@pytest.mark.parametrize(
    ("migrations", "message"),
    [
        ((Migration(2, "skips", ("x",), ("x",)),), "migration 'skips' has version 2, expected 1"),
        (
            (Migration(1, "a", ("x",), ("x",)), Migration(1, "b", ("x",), ("x",))),
            "'b' has version 1, expected 2",
        ),
        ((Migration(1, "half", ("x",), ()),), r"migration 1 \(half\) lacks statements for a dialect"),
    ],
)
def test_a_malformed_list_is_refused(migrations: tuple[Migration, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_sequence(migrations)


def test_a_report_lists_what_it_applied() -> None:
    assert list(MigrationReport(previous=1, current=3).applied) == [2, 3]
    assert not MigrationReport(previous=3, current=3).applied
