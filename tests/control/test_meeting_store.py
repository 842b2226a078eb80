"""The `MeetingStore` contract, against every implementation (in memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.schemas import MEETING_ID_PATTERN
from darktower.control.store import Meeting, MeetingExistsError, MeetingStore

CREATED = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001 - hypothesis takes naive bounds and adds the zone
LATEST = datetime(2200, 1, 1)  # noqa: DTZ001


async def test_a_created_meeting_reads_back_equal(store: MeetingStore) -> None:
    meeting = Meeting(meeting_id="m1", title="Weekly plan", created_at=CREATED)
    await store.create(meeting)
    assert await store.get("m1") == meeting


async def test_the_creator_reads_back(store: MeetingStore) -> None:
    meeting = Meeting(meeting_id="m1", title="", created_at=CREATED, created_by="user-1")
    await store.create(meeting)
    assert await store.get("m1") == meeting


async def test_an_unknown_id_is_none(store: MeetingStore) -> None:
    await store.create(Meeting(meeting_id="known", title="", created_at=CREATED))
    assert await store.get("unknown") is None
    assert await store.get("KNOWN") is None


async def test_a_taken_id_is_refused_and_the_first_meeting_kept(store: MeetingStore) -> None:
    first = Meeting(meeting_id="m", title="first", created_at=CREATED)
    await store.create(first)
    with pytest.raises(MeetingExistsError, match="meeting 'm' already exists") as caught:
        await store.create(Meeting(meeting_id="m", title="second", created_at=CREATED + timedelta(1)))
    assert caught.value.meeting_id == "m"
    assert await store.get("m") == first


async def test_created_at_keeps_its_instant_whatever_its_zone(store: MeetingStore) -> None:
    local = CREATED.astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    await store.create(Meeting(meeting_id="zoned", title="", created_at=local))
    found = await store.get("zoned")
    assert found is not None
    assert found.created_at == CREATED
    assert found.created_at.utcoffset() is not None


async def test_racing_creates_of_one_id_have_exactly_one_winner(store: MeetingStore) -> None:
    meetings = [Meeting(meeting_id="race", title=str(i), created_at=CREATED) for i in range(8)]
    results = await asyncio.gather(*(store.create(m) for m in meetings), return_exceptions=True)
    assert results.count(None) == 1
    assert all(isinstance(r, MeetingExistsError) for r in results if r is not None)
    winner = meetings[results.index(None)]
    assert await store.get("race") == winner


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    meeting_id=st.from_regex(MEETING_ID_PATTERN, fullmatch=True),
    title=st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=200),
    created_at=st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC)),
)
async def test_any_id_and_title_the_api_accepts_round_trip(
    store: MeetingStore, meeting_id: str, title: str, created_at: datetime
) -> None:
    meeting = Meeting(meeting_id=meeting_id, title=title, created_at=created_at)
    existing = await store.get(meeting_id)
    if existing is None:
        await store.create(meeting)
        assert await store.get(meeting_id) == meeting
    else:
        with pytest.raises(MeetingExistsError):
            await store.create(meeting)
