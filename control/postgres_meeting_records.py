"""The PostgreSQL `MeetingRecords`, on the pool of `PostgresMeetingStore` (tables of migration 3).

Each atomic step is one statement (`INSERT ... ON CONFLICT DO NOTHING`, `UPDATE ... WHERE status =
'waiting' RETURNING`), so no transaction spans round trips. Every statement is parameterized.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import asyncpg

from darktower.control.meeting_records import (
    HistoryEvent,
    HistoryKind,
    LobbyRequest,
    LobbyStatus,
    Recording,
)
from darktower.control.postgres_pool import PostgresQueries

_LOBBY_COLUMNS: Final = (
    "request_id, ticket_hash, meeting_id, participant_id, display_name, user_id, viewer, publish, subscribe, "
    "status, requested_at, decided_at, decided_by"
)
_RECORDING_COLUMNS: Final = (
    "recording_id, meeting_id, created_at, created_by, started_at, ended_at, location, size_bytes"
)


class PostgresMeetingRecords:
    def __init__(self, queries: PostgresQueries) -> None:
        self._q = queries

    async def record_history(self, events: list[HistoryEvent]) -> int:
        if not events:
            return 0
        rows = await self._q.fetch(
            "INSERT INTO meeting_history "
            "(source, meeting_id, participant_id, display_name, role, kind, reason, at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
            "$7::text[], $8::timestamptz[]) ON CONFLICT (source) DO NOTHING RETURNING event_id",
            [e.source for e in events],
            [e.meeting_id for e in events],
            [e.participant_id for e in events],
            [e.display_name for e in events],
            [e.role for e in events],
            [e.kind.value for e in events],
            [e.reason for e in events],
            [e.at for e in events],
        )
        return len(rows)

    async def history(self, meeting_id: str, *, limit: int, after: int = 0) -> list[HistoryEvent]:
        rows = await self._q.fetch(
            "SELECT event_id, source, meeting_id, participant_id, display_name, role, kind, reason, at "
            "FROM meeting_history WHERE meeting_id = $1 AND event_id > $2 ORDER BY event_id LIMIT $3",
            meeting_id,
            after,
            limit,
        )
        return [
            HistoryEvent(
                event_id=row["event_id"],
                source=row["source"],
                meeting_id=row["meeting_id"],
                participant_id=row["participant_id"],
                display_name=row["display_name"],
                role=row["role"],
                kind=HistoryKind(row["kind"]),
                reason=row["reason"],
                at=row["at"],
            )
            for row in rows
        ]

    async def add_recording(self, recording: Recording) -> None:
        await self._q.execute(
            f"INSERT INTO recordings ({_RECORDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",  # noqa: S608 (constant)
            recording.recording_id,
            recording.meeting_id,
            recording.created_at,
            recording.created_by,
            recording.started_at,
            recording.ended_at,
            recording.location,
            recording.size_bytes,
        )

    async def recordings(self, meeting_id: str) -> list[Recording]:
        rows = await self._q.fetch(
            f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE meeting_id = $1 "  # noqa: S608 (constant)
            "ORDER BY started_at, recording_id",
            meeting_id,
        )
        return [
            Recording(
                recording_id=row["recording_id"],
                meeting_id=row["meeting_id"],
                created_at=row["created_at"],
                created_by=row["created_by"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                location=row["location"],
                size_bytes=row["size_bytes"],
            )
            for row in rows
        ]

    async def add_lobby_request(self, request: LobbyRequest) -> None:
        await self._q.execute(
            f"INSERT INTO lobby_requests ({_LOBBY_COLUMNS}) "  # noqa: S608 (constant)
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
            request.requested_at,
            request.decided_at,
            request.decided_by,
        )

    async def lobby_request(self, meeting_id: str, ticket_hash: str) -> LobbyRequest | None:
        row = await self._q.fetchrow(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests WHERE meeting_id = $1 AND ticket_hash = $2",  # noqa: S608
            meeting_id,
            ticket_hash,
        )
        return None if row is None else _lobby(row)

    async def waiting(self, meeting_id: str, *, limit: int) -> list[LobbyRequest]:
        rows = await self._q.fetch(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests "  # noqa: S608 (constant)
            "WHERE meeting_id = $1 AND status = $2 ORDER BY requested_at, request_id LIMIT $3",
            meeting_id,
            LobbyStatus.WAITING.value,
            limit,
        )
        return [_lobby(row) for row in rows]

    async def decide_lobby_request(
        self, meeting_id: str, request_id: str, *, status: LobbyStatus, by: str | None, at: datetime
    ) -> tuple[LobbyRequest | None, bool]:
        row = await self._q.fetchrow(
            "UPDATE lobby_requests SET status = $3, decided_at = $4, decided_by = $5 "  # noqa: S608 (constant)
            f"WHERE meeting_id = $1 AND request_id = $2 AND status = $6 RETURNING {_LOBBY_COLUMNS}",
            meeting_id,
            request_id,
            status.value,
            at,
            by,
            LobbyStatus.WAITING.value,
        )
        if row is not None:
            return _lobby(row), True
        row = await self._q.fetchrow(
            f"SELECT {_LOBBY_COLUMNS} FROM lobby_requests WHERE meeting_id = $1 AND request_id = $2",  # noqa: S608
            meeting_id,
            request_id,
        )
        return (None if row is None else _lobby(row)), False


def _lobby(row: asyncpg.Record) -> LobbyRequest:
    return LobbyRequest(
        request_id=row["request_id"],
        ticket_hash=row["ticket_hash"],
        meeting_id=row["meeting_id"],
        participant_id=row["participant_id"],
        display_name=row["display_name"],
        user_id=row["user_id"],
        viewer=row["viewer"],
        publish=row["publish"],
        subscribe=row["subscribe"],
        status=LobbyStatus(row["status"]),
        requested_at=row["requested_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
    )
