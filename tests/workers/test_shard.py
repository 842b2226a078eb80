"""Meeting ownership: stable across processes and restarts, spread over every worker."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from darktower.workers.shard import owner_index

PINNED = [1, 3, 1, 2, 1, 5, 1, 3]


def test_the_owner_is_pinned() -> None:
    # Pinned values: a change here moves every live meeting to another worker during a rolling upgrade.
    assert owner_index("abc", 1) == 0
    assert [owner_index(f"meeting-{i}", 7) for i in range(8)] == PINNED


def test_meetings_spread_over_every_worker() -> None:
    counts = Counter(owner_index(f"m{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800


@given(st.text(), st.integers(min_value=1, max_value=256))
def test_the_owner_is_always_a_valid_index(meeting_id: str, workers: int) -> None:
    assert 0 <= owner_index(meeting_id, workers) < workers


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        owner_index("m", 0)
