"""The SQLite `MeetingRecords`, on the connection of `SqliteMeetingStore` (tables of migration 3).

Like the other SQLite stores on that shared autocommit connection, each atomic step is one statement
(`INSERT ... ON CONFLICT DO NOTHING`, `UPDATE ... WHERE status = 'waiting' RETURNING`). Times are stored as
fixed-width ISO 8601 text in UTC, so text order is time order. Every statement is parameterized.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite

from darktower.control.meeting_records import (
    HistoryEvent,
    HistoryKind,
    LobbyRequest,
    LobbyStatus,
    Recording,
)

_LOBBY_COLUMNS: Final = (
    "request_id, ticket_hash, meeting_id, participant_id, display_name, user_id, viewer, publish, subscribe, "
    "status, requested_at, decided_at, decided_by"
)
_RECORDING_COLUMNS: Final = (
    "recording_id, meeting_id, created_at, created_by, started_at, ended_at, location, size_bytes"
)


def text(moment: datetime) -> str:
    """`moment` in UTC as fixed-width ISO 8601 (microseconds always written)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def time_of(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else time_of(value)


class SqliteMeetingRecords:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    async def record_history(self, events: list[HistoryEvent]) -> int:
        stored = 0
        for event in events:
            async with self._db.execute(
                "INSERT INTO meeting_history "
                "(source, meeting_id, participant_id, display_name, role, kind, reason, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO NOTHING",
                (
                    event.source,
                    event.meeting_id,
                    event.participant_id,
                    event.display_name,
                    event.role,
                    event.kind.value,
                    event.reason,
                    text(event.at),
                ),
            ) as cursor:
                stored += cursor.rowcount
        return stored

    async def history(self, meeting_id: str, *, limit: int, after: int = 0) -> list[HistoryEvent]:
        async with self._db.execute(
            "SELECT event_id, source, meeting_id, participant_id, display_name, role, kind, reason, at "
            "FROM meeting_history WHERE meeting_id = ? AND event_id > ? ORDER BY event_id LIMIT ?",
            (meeting_id, after, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            HistoryEvent(
                event_id=row[0],
                source=row[1],
                meeting_id=row[2],
                participant_id=row[3],
                display_name=row[4],
                role=row[5],
                kind=HistoryKind(row[6]),
                reason=row[7],
                at=time_of(row[8]),
            )
            for row in rows
        ]

    async def add_recording(self, recording: Recording) -> None:
        await self._db.execute(
            f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (constant)
            (
                recording.recording_id,
                recording.meeting_id,
                text(recording.created_at),
                recording.created_by,
                text(recording.started_at),
                None if recording.ended_at is None else text(recording.ended_at),
                recording.location,
                recording.size_bytes,
            ),
        )

    async def recordings(self, meeting_id: str) -> list[Recording]:
        async with self._db.execute(
            f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE meeting_id = ? "  # noqa: S608 (constant)
            "ORDER BY started_at, recording_id",
            (meeting_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            Recording(
                recording_id=row[0],
                meeting_id=row[1],
                created_at=time_of(row[2]),
                created_by=row[3],
                started_at=time_of(row[4]),
                ended_at=_optional_time(row[5]),
                location=row[6],
                size_bytes=row[7],
            )
            for row in rows
        ]

    async def add_lobby_request(self, request: LobbyRequest) -> None:
        await self._db.execute(
            f"INSERT INTO lobby_requests ({_LOBBY_COLUMNS}) "  # noqa: S608 (constant)
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.request_id,
                request.ticket_hash,
                request.meeting_id,
                request.participant_id,
                request.display_name,
                request.user_id,
                request.viewer,
                request.publish,
                request.subscribe,
                request.status.value,
                text(request.requested_at),
                None if request.decided_at is None else text(request.decided_at),
                request.decided_by,
            ),
        )

    async def lobby_request(self, meeting_id: str, ticket_hash: str) -> LobbyRequest | None:
        async with self._db.execute(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests "  # noqa: S608 (constant)
            "WHERE meeting_id = ? AND ticket_hash = ?",
            (meeting_id, ticket_hash),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _lobby(row)

    async def waiting(self, meeting_id: str, *, limit: int) -> list[LobbyRequest]:
        async with self._db.execute(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests "  # noqa: S608 (constant)
            "WHERE meeting_id = ? AND status = ? ORDER BY requested_at, request_id LIMIT ?",
            (meeting_id, LobbyStatus.WAITING.value, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_lobby(row) for row in rows]

    async def decide_lobby_request(
        self, meeting_id: str, request_id: str, *, status: LobbyStatus, by: str | None, at: datetime
    ) -> tuple[LobbyRequest | None, bool]:
        async with self._db.execute(
            "UPDATE lobby_requests SET status = ?, decided_at = ?, decided_by = ? "  # noqa: S608 (constant)
            f"WHERE meeting_id = ? AND request_id = ? AND status = ? RETURNING {_LOBBY_COLUMNS}",
            (status.value, text(at), by, meeting_id, request_id, LobbyStatus.WAITING.value),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            return _lobby(row), True
        async with self._db.execute(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests "  # noqa: S608 (constant)
            "WHERE meeting_id = ? AND request_id = ?",
            (meeting_id, request_id),
        ) as cursor:
            row = await cursor.fetchone()
        return (None if row is None else _lobby(row)), False


def _lobby(row: Any) -> LobbyRequest:
    return LobbyRequest(
        request_id=row[0],
        ticket_hash=row[1],
        meeting_id=row[2],
        participant_id=row[3],
        display_name=row[4],
        user_id=row[5],
        viewer=bool(row[6]),
        publish=bool(row[7]),
        subscribe=bool(row[8]),
        status=LobbyStatus(row[9]),
        requested_at=time_of(row[10]),
        decided_at=_optional_time(row[11]),
        decided_by=row[12],
    )
