"""The `MeetingRecords` contract (history, recordings, lobby), against every implementation (in memory,
SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darktower.control.meeting_records import (
    HistoryEvent,
    HistoryKind,
    LobbyRequest,
    LobbyStatus,
    Recording,
)
from darktower.control.store import MeetingStore

T = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def event(n: int, meeting_id: str = "m", kind: HistoryKind = HistoryKind.JOINED) -> HistoryEvent:
    return HistoryEvent(
        source=f"0:abc:{n}",
        meeting_id=meeting_id,
        participant_id=f"p{n}",
        display_name=f"Person {n}",
        role="participant",
        kind=kind,
        reason="" if kind is HistoryKind.JOINED else "left",
        at=T + timedelta(seconds=n),
    )


async def test_history_is_stored_once_per_source_in_order_and_pages(store: MeetingStore) -> None:
    records = store.records
    assert await records.record_history([event(1), event(2), event(3, "other")]) == 3
    assert await records.record_history([event(2), event(4, kind=HistoryKind.LEFT)]) == 1
    found = await records.history("m", limit=10)
    assert [(e.participant_id, e.kind, e.reason) for e in found] == [
        ("p1", HistoryKind.JOINED, ""),
        ("p2", HistoryKind.JOINED, ""),
        ("p4", HistoryKind.LEFT, "left"),
    ]
    assert [replace(e, event_id=0) for e in found] == [event(1), event(2), event(4, kind=HistoryKind.LEFT)]
    assert found[0].event_id < found[1].event_id < found[2].event_id
    page = await records.history("m", limit=1, after=found[0].event_id)
    assert [e.participant_id for e in page] == ["p2"]
    assert await records.record_history([]) == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=64),
    participant=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=64),
)
async def test_any_reported_names_round_trip(store: MeetingStore, name: str, participant: str) -> None:
    reported = replace(
        event(0), source=f"src:{secrets.token_hex(8)}", participant_id=participant, display_name=name
    )
    await store.records.record_history([reported])
    found = [e for e in await store.records.history("m", limit=10_000) if e.source == reported.source]
    assert [replace(e, event_id=0) for e in found] == [reported]


async def test_recordings_read_back_by_start(store: MeetingStore) -> None:
    later = Recording(
        recording_id="r2",
        meeting_id="m",
        created_at=T,
        created_by="host",
        started_at=T + timedelta(hours=1),
        ended_at=None,
        location="s3://bucket/r2.webm",
        size_bytes=0,
    )
    earlier = replace(
        later, recording_id="r1", started_at=T, ended_at=T + timedelta(minutes=30), size_bytes=2**40
    )
    await store.records.add_recording(later)
    await store.records.add_recording(earlier)
    await store.records.add_recording(replace(earlier, recording_id="elsewhere", meeting_id="other"))
    assert await store.records.recordings("m") == [earlier, later]
    assert await store.records.recordings("none") == []


def lobby(request_id: str, *, meeting_id: str = "m", at: datetime = T) -> LobbyRequest:
    return LobbyRequest(
        request_id=request_id,
        ticket_hash=f"hash-{request_id}",
        meeting_id=meeting_id,
        participant_id=f"p-{request_id}",
        display_name=request_id.title(),
        user_id=None,
        viewer=False,
        publish=True,
        subscribe=True,
        status=LobbyStatus.WAITING,
        requested_at=at,
    )


async def test_lobby_requests_wait_until_decided_once(store: MeetingStore) -> None:
    records = store.records
    await records.add_lobby_request(lobby("b", at=T + timedelta(seconds=1)))
    await records.add_lobby_request(lobby("a"))
    await records.add_lobby_request(lobby("c", meeting_id="other"))
    assert [r.request_id for r in await records.waiting("m", limit=10)] == ["a", "b"]
    assert await records.lobby_request("m", "hash-a") == lobby("a")
    assert await records.lobby_request("other", "hash-a") is None

    decided, changed = await records.decide_lobby_request(
        "m", "a", status=LobbyStatus.ADMITTED, by="host", at=T + timedelta(minutes=1)
    )
    assert changed
    assert decided == replace(
        lobby("a"), status=LobbyStatus.ADMITTED, decided_by="host", decided_at=T + timedelta(minutes=1)
    )
    again, changed = await records.decide_lobby_request("m", "a", status=LobbyStatus.DENIED, by="x", at=T)
    assert (again, changed) == (decided, False)
    assert await records.decide_lobby_request("other", "a", status=LobbyStatus.DENIED, by=None, at=T) == (
        None,
        False,
    )
    assert [r.request_id for r in await records.waiting("m", limit=10)] == ["b"]


async def test_racing_decisions_have_exactly_one_winner(store: MeetingStore) -> None:
    await store.records.add_lobby_request(lobby("r"))
    statuses = [LobbyStatus.ADMITTED, LobbyStatus.DENIED] * 4
    results = await asyncio.gather(
        *(
            store.records.decide_lobby_request("m", "r", status=s, by=str(i), at=T)
            for i, s in enumerate(statuses)
        )
    )
    winners = [request for request, changed in results if changed]
    assert len(winners) == 1
    assert all(request == winners[0] for request, _ in results)
