"""The admin API: a JSON view of the meetings live on the media workers.

Who is an admin: a signed-in account named in `auth.admins` by its user id or its email (case-insensitive).
Every admin route takes `Authorization: Bearer <access token>`; without one it answers 401
`unauthenticated`, with an invalid one 401 `invalid_token` / `token_expired`, and for an account that is
not an admin 403 `not_admin`.

Where the live meetings come from is a `LiveMeetingsSource`: the worker admin channel in production. With no
source configured the route answers 503 `live_view_unavailable`; a source that cannot reach some workers
still answers, naming those workers in `unreachable_workers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import FastAPI, Request
from pydantic import BaseModel

from darktower.control.accounts import User
from darktower.control.api_common import ApiError, bearer_token
from darktower.control.auth import AuthService

LIVE_MEETINGS_PATH = "/v1/admin/meetings/live"


@dataclass(frozen=True, slots=True)
class LiveMeeting:
    meeting_id: str
    worker: int
    """Index of the worker that owns the meeting on this node."""
    participants: int
    locked: bool = False


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    meetings: Sequence[LiveMeeting]
    unreachable_workers: Sequence[int] = ()
    """Workers that did not answer in time: their meetings are missing from `meetings`."""


class LiveMeetingsSource(Protocol):
    async def live_meetings(self) -> LiveSnapshot:
        """The meetings every reachable worker of this node serves now."""


class LiveMeetingView(BaseModel):
    meeting_id: str
    worker: int
    participants: int
    locked: bool


class LiveMeetingsResponse(BaseModel):
    meetings: list[LiveMeetingView]
    unreachable_workers: list[int]


def is_admin(user: User, admins: Sequence[str]) -> bool:
    named = {name.strip().lower() for name in admins}
    return user.user_id.lower() in named or (user.email is not None and user.email.lower() in named)


def add_admin_routes(
    app: FastAPI, *, auth: AuthService, admins: Sequence[str], live: LiveMeetingsSource | None
) -> None:
    async def require_admin(request: Request) -> User:
        token = bearer_token(request)
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "sign in as an admin and send `Authorization: Bearer <access token>`",
                {"WWW-Authenticate": "Bearer"},
            )
        user = await auth.current_user(token)
        if not is_admin(user, admins):
            raise ApiError(403, "not_admin", "this account is not an admin (auth.admins)")
        return user

    @app.get(LIVE_MEETINGS_PATH)
    async def live_meetings(request: Request) -> LiveMeetingsResponse:
        await require_admin(request)
        if live is None:
            raise ApiError(503, "live_view_unavailable", "this control plane has no view of the workers")
        snapshot = await live.live_meetings()
        return LiveMeetingsResponse(
            meetings=[
                LiveMeetingView(
                    meeting_id=m.meeting_id, worker=m.worker, participants=m.participants, locked=m.locked
                )
                for m in sorted(snapshot.meetings, key=lambda m: m.meeting_id)
            ],
            unreachable_workers=sorted(snapshot.unreachable_workers),
        )
