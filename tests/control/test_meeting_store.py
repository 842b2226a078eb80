"""The `MeetingStore` contract, against every implementation (in memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.schemas import MEETING_ID_PATTERN
from darktower.control.store import Meeting, MeetingExistsError, MeetingStore, PageCursor, RoomSettings

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


# --- settings, schedule, hosts, end, listing -----------------------------------------------------------

SETTINGS = RoomSettings(
    max_participants=12, e2ee_required=True, guests_allowed=False, lobby=True, recording_allowed=True
)


async def test_settings_schedule_and_hosts_read_back_equal(store: MeetingStore) -> None:
    meeting = Meeting(
        meeting_id="full",
        title="Board",
        created_at=CREATED,
        created_by="owner",
        settings=SETTINGS,
        scheduled_start=CREATED + timedelta(days=1),
        hosts=("cohost-1", "cohost-2"),
    )
    await store.create(meeting)
    assert await store.get("full") == meeting


async def test_update_replaces_settings_but_never_creation_or_end(store: MeetingStore) -> None:
    await store.create(Meeting(meeting_id="m", title="old", created_at=CREATED, created_by="owner"))
    await store.end("m", CREATED + timedelta(hours=1))
    changed = Meeting(
        meeting_id="m",
        title="new",
        created_at=CREATED + timedelta(days=9),
        created_by="someone else",
        settings=SETTINGS,
        scheduled_start=CREATED,
        hosts=("h",),
    )
    assert await store.update(changed)
    assert await store.get("m") == replace(
        changed, created_at=CREATED, created_by="owner", ended_at=CREATED + timedelta(hours=1)
    )
    assert not await store.update(replace(changed, meeting_id="missing"))
    assert await store.get("missing") is None


async def test_the_first_end_is_kept(store: MeetingStore) -> None:
    await store.create(Meeting(meeting_id="m", title="", created_at=CREATED))
    first = CREATED + timedelta(minutes=5)
    ended = await store.end("m", first)
    assert ended is not None
    assert ended.ended_at == first
    again = await store.end("m", first + timedelta(minutes=5))
    assert again is not None
    assert again.ended_at == first
    assert await store.end("missing", first) is None


async def test_listing_pages_through_created_and_hosted_meetings_newest_first(store: MeetingStore) -> None:
    for n in range(7):
        await store.create(
            Meeting(
                meeting_id=f"own{n}", title="", created_at=CREATED + timedelta(minutes=n), created_by="me"
            )
        )
    await store.create(Meeting(meeting_id="same-a", title="", created_at=CREATED, created_by="me"))
    await store.create(
        Meeting(meeting_id="hosted", title="", created_at=CREATED + timedelta(hours=1), hosts=("x", "me"))
    )
    await store.create(Meeting(meeting_id="other", title="", created_at=CREATED, created_by="someone"))
    await store.create(Meeting(meeting_id="near", title="", created_at=CREATED, hosts=("mee",)))

    seen: list[str] = []
    cursor: PageCursor | None = None
    while True:
        page = await store.list_for_user("me", limit=3, after=cursor)
        seen += [m.meeting_id for m in page]
        if len(page) < 3:
            break
        cursor = PageCursor(page[-1].created_at, page[-1].meeting_id)
    assert seen == ["hosted", "own6", "own5", "own4", "own3", "own2", "own1", "same-a", "own0"]
    assert await store.list_for_user("nobody", limit=10, after=None) == []
