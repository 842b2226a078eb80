"""The meeting routes of the control API: create, read, update, end, list; joins (roles, schedule, guests,
lobby); host actions that reach the worker owning the meeting; history; recordings.

Who may do what. Anyone may create a meeting and read one; a meeting created with an access token records
its creator. The creator and the invited hosts (`host_user_ids`) are its hosts: they alone update or end it,
act on participants, run its lobby and read its history and recordings, and they join with the host role
(also before the scheduled start, into a locked meeting and past the lobby). Everyone else joins as a
participant, or as a viewer when asking for it (receive only); without an account only when the meeting
allows guests. Listing (`GET /v1/meetings`) needs an account and shows the meetings it created or hosts.

Refusals (besides those of `api_common`): `unauthenticated` (401: sign in first), `not_host` (403),
`guests_not_allowed` (403: sign in to join), `meeting_not_started` (403: before the scheduled start's
grace window of `EARLY_JOIN_S`), `meeting_ended` (409 for changes, 410 for joins), `meeting_not_live`
(409: a lock/unlock with nobody in the meeting), `participant_not_found` (404), `lobby_request_not_found`
(404), `lobby_denied` (403), `lobby_request_decided` (409), `recording_not_allowed` (409),
`worker_unavailable` (503: the meeting's worker did not answer; an end is recorded all the same, so no new
joins are let in, and can be retried).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from fastapi import FastAPI, Request, Response

from darktower.control.accounts import AuditAction, AuditOutcome
from darktower.control.api_common import ApiError, bearer_token, client_ip, parse_body
from darktower.control.auth import AuthService
from darktower.control.meeting_history import HistoryCollector
from darktower.control.meeting_records import LobbyRequest, LobbyStatus, Recording
from darktower.control.meeting_schemas import (
    ActionResponse,
    CreateMeetingRequest,
    HistoryEntry,
    HistoryResponse,
    JoinRequest,
    LobbyEntry,
    LobbyListResponse,
    LobbyPollRequest,
    LobbyWaitingResponse,
    MeetingListResponse,
    MeetingResponse,
    RecordingListResponse,
    RecordingRequest,
    RecordingResponse,
    SettingsBody,
    UpdateMeetingRequest,
)
from darktower.control.meeting_views import issue_join, meeting_response, recording_response
from darktower.control.ratelimit import RateLimiter
from darktower.control.schemas import MEETING_ID_PATTERN, JoinResponse, RequestBody
from darktower.control.store import Meeting, MeetingExistsError, MeetingStore, PageCursor, RoomSettings
from darktower.control.worker_admin import WorkerAdmin, WorkerRefusedError, WorkerUnavailableError
from darktower.core.tokens import Role, TokenSigner

EARLY_JOIN_S: Final = 600
"""Participants may join this long before the scheduled start."""
DEFAULT_PAGE: Final = 20
MAX_PAGE: Final = 100
MAX_HISTORY_PAGE: Final = 500
MAX_LOBBY_LIST: Final = 100

MEETING_BODIES: Final[dict[tuple[str, str], tuple[type[RequestBody], bool]]] = {
    ("post", "/v1/meetings"): (CreateMeetingRequest, False),
    ("patch", "/v1/meetings/{meeting_id}"): (UpdateMeetingRequest, True),
    ("post", "/v1/meetings/{meeting_id}/join"): (JoinRequest, True),
    ("post", "/v1/meetings/{meeting_id}/lobby/poll"): (LobbyPollRequest, True),
    ("post", "/v1/meetings/{meeting_id}/recordings"): (RecordingRequest, True),
}
"""The meeting routes' bodies, for the OpenAPI document (`darktower.control.openapi_doc`)."""

_MEETING_ID_RE: Final = re.compile(MEETING_ID_PATTERN)
_PARTICIPANT_ACTIONS: Final = {"mute": AuditAction.HOST_MUTE, "remove": AuditAction.HOST_REMOVE}
_MEETING_ACTIONS: Final = {"lock": AuditAction.HOST_LOCK, "unlock": AuditAction.HOST_UNLOCK}


@dataclass(frozen=True, slots=True)
class MeetingDeps:
    """What the meeting routes use."""

    store: MeetingStore
    auth: AuthService
    signer: TokenSigner
    limiter: RateLimiter
    workers: WorkerAdmin
    history: HistoryCollector
    join_target: Callable[[Meeting], tuple[str, list[bytes]]]
    """The WebTransport URL of the meeting and the certificate hashes to accept (ApiError when unknown)."""
    clock: Callable[[], float] = time.time


def add_meeting_routes(app: FastAPI, deps: MeetingDeps) -> None:  # noqa: C901, PLR0915 (one route each)
    store, auth = deps.store, deps.auth

    def now() -> datetime:
        return datetime.fromtimestamp(deps.clock(), UTC)

    def caller(request: Request) -> str | None:
        token = bearer_token(request)
        return auth.authenticate(token).user_id if token is not None else None

    def signed_in(request: Request) -> str:
        user_id = caller(request)
        if user_id is None:
            raise ApiError(
                401,
                "unauthenticated",
                "sign in and send `Authorization: Bearer <access token>`",
                {"WWW-Authenticate": "Bearer"},
            )
        return user_id

    async def hosted(
        request: Request, meeting_id: str, attempt: AuditAction | None = None
    ) -> tuple[Meeting, str]:
        """The meeting and the signed-in host; a refused `attempt` at a change is audited as a failure."""
        user_id = signed_in(request)
        meeting = await existing(store, meeting_id)
        if not meeting.is_host(user_id):
            if attempt is not None:
                detail = f"{meeting_id}: not a host"
                await auth.record(attempt, AuditOutcome.FAILURE, user_id, client_ip(request), detail)
            raise ApiError(403, "not_host", f"only a host of meeting {meeting_id!r} may do that")
        return meeting, user_id

    async def audit(action: AuditAction, user_id: str | None, request: Request, detail: str) -> None:
        await auth.record(action, AuditOutcome.SUCCESS, user_id, client_ip(request), detail)

    async def on_worker(meeting_id: str, action: str, participant_id: str = "") -> None:
        try:
            await deps.workers.host_action(meeting_id, action, participant_id)
        except WorkerUnavailableError as exc:
            raise ApiError(503, "worker_unavailable", f"{exc}; try again") from None
        except WorkerRefusedError as exc:
            if exc.code != "unknown_participant":
                raise ApiError(502, "worker_refused", exc.message) from None
            if participant_id:
                raise ApiError(
                    404,
                    "participant_not_found",
                    f"no participant {participant_id!r} in meeting {meeting_id!r}",
                ) from None
            raise ApiError(409, "meeting_not_live", f"nobody is in meeting {meeting_id!r} now") from None

    # --- meetings --------------------------------------------------------------------------------------

    @app.post("/v1/meetings", status_code=201)
    async def create_meeting(request: Request) -> MeetingResponse:
        creator = caller(request)
        body = await parse_body(request, CreateMeetingRequest, empty_means_object=True)
        meeting = Meeting(
            meeting_id=body.meeting_id if body.meeting_id is not None else secrets.token_urlsafe(12),
            title=body.title,
            created_at=now(),
            created_by=creator,
            settings=_settings(RoomSettings(), body.settings),
            scheduled_start=body.scheduled_start,
            hosts=tuple(dict.fromkeys(body.host_user_ids)),
        )
        try:
            await store.create(meeting)
        except MeetingExistsError as exc:
            raise ApiError(409, "meeting_exists", str(exc)) from None
        await audit(AuditAction.MEETING_CREATE, creator, request, meeting.meeting_id)
        return meeting_response(meeting)

    @app.get("/v1/meetings")
    async def list_meetings(request: Request) -> MeetingListResponse:
        user_id = signed_in(request)
        limit = _int_query(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        cursor = _cursor(request.query_params.get("cursor"))
        page = await store.list_for_user(user_id, limit=limit, after=cursor)
        last = page[-1] if len(page) == limit else None
        return MeetingListResponse(
            meetings=[meeting_response(m) for m in page],
            next_cursor=None
            if last is None
            else _encode_cursor(PageCursor(last.created_at, last.meeting_id)),
        )

    @app.get("/v1/meetings/{meeting_id}")
    async def get_meeting(meeting_id: str) -> MeetingResponse:
        return meeting_response(await existing(store, meeting_id))

    @app.patch("/v1/meetings/{meeting_id}")
    async def update_meeting(meeting_id: str, request: Request) -> MeetingResponse:
        meeting, user_id = await hosted(request, meeting_id, AuditAction.MEETING_UPDATE)
        body = await parse_body(request, UpdateMeetingRequest, empty_means_object=False)
        if meeting.ended_at is not None:
            raise ApiError(409, "meeting_ended", f"meeting {meeting_id!r} has ended; it cannot change")
        given = body.model_fields_set
        changed = replace(
            meeting,
            title=body.title if body.title is not None else meeting.title,
            scheduled_start=body.scheduled_start if "scheduled_start" in given else meeting.scheduled_start,
            settings=_settings(meeting.settings, body.settings) if body.settings else meeting.settings,
            hosts=tuple(dict.fromkeys(body.host_user_ids))
            if body.host_user_ids is not None
            else meeting.hosts,
        )
        if not await store.update(changed):
            raise ApiError(404, "meeting_not_found", f"no meeting {meeting_id!r}")
        await audit(AuditAction.MEETING_UPDATE, user_id, request, f"{meeting_id}: {sorted(given)}")
        return meeting_response(changed)

    @app.post("/v1/meetings/{meeting_id}/end")
    async def end_meeting(meeting_id: str, request: Request) -> MeetingResponse:
        _, user_id = await hosted(request, meeting_id, AuditAction.MEETING_END)
        ended = await store.end(meeting_id, now())
        if ended is None:
            raise ApiError(404, "meeting_not_found", f"no meeting {meeting_id!r}")
        await audit(AuditAction.MEETING_END, user_id, request, meeting_id)
        await on_worker(meeting_id, "end")
        return meeting_response(ended)

    # --- host actions ----------------------------------------------------------------------------------

    @app.post("/v1/meetings/{meeting_id}/lock")
    async def lock_meeting(meeting_id: str, request: Request) -> ActionResponse:
        return await meeting_action(meeting_id, "lock", request)

    @app.post("/v1/meetings/{meeting_id}/unlock")
    async def unlock_meeting(meeting_id: str, request: Request) -> ActionResponse:
        return await meeting_action(meeting_id, "unlock", request)

    async def meeting_action(meeting_id: str, action: str, request: Request) -> ActionResponse:
        meeting, user_id = await hosted(request, meeting_id, _MEETING_ACTIONS[action])
        if meeting.ended_at is not None:
            raise ApiError(409, "meeting_ended", f"meeting {meeting_id!r} has ended")
        await on_worker(meeting_id, action)
        await audit(_MEETING_ACTIONS[action], user_id, request, meeting_id)
        return ActionResponse(meeting_id=meeting_id, action=action, participant_id=None)

    @app.post("/v1/meetings/{meeting_id}/participants/{participant_id}/{action}")
    async def participant_action(
        meeting_id: str, participant_id: str, action: str, request: Request
    ) -> ActionResponse:
        if action not in _PARTICIPANT_ACTIONS:
            raise ApiError(
                404, "not_found", f"nothing at {request.url.path}: the actions are mute and remove"
            )
        _, user_id = await hosted(request, meeting_id, _PARTICIPANT_ACTIONS[action])
        if not 1 <= len(participant_id) <= 128:
            raise ApiError(404, "participant_not_found", "participant ids are 1 to 128 characters")
        await on_worker(meeting_id, action, participant_id)
        await audit(_PARTICIPANT_ACTIONS[action], user_id, request, f"{meeting_id} {participant_id}")
        return ActionResponse(meeting_id=meeting_id, action=action, participant_id=participant_id)

    # --- joins and the lobby ---------------------------------------------------------------------------

    @app.post("/v1/meetings/{meeting_id}/join")
    async def join_meeting(
        meeting_id: str, request: Request, response: Response
    ) -> JoinResponse | LobbyWaitingResponse:
        await deps.limiter.join(client_ip(request))
        user_id = caller(request)
        body = await parse_body(request, JoinRequest, empty_means_object=False)
        meeting = await existing(store, meeting_id)
        if meeting.ended_at is not None:
            raise ApiError(410, "meeting_ended", f"meeting {meeting_id!r} has ended")
        host = meeting.is_host(user_id)
        if not host:
            _check_guest_and_schedule(meeting, user_id, now())
        role = Role.HOST if host else Role.VIEWER if body.viewer else Role.PARTICIPANT
        if meeting.settings.lobby and not host:
            ticket = secrets.token_urlsafe(32)
            waiting = LobbyRequest(
                request_id=secrets.token_urlsafe(12),
                ticket_hash=_ticket_hash(ticket),
                meeting_id=meeting_id,
                participant_id=secrets.token_urlsafe(12),
                display_name=body.display_name,
                user_id=user_id,
                viewer=body.viewer,
                publish=body.publish,
                subscribe=body.subscribe,
                status=LobbyStatus.WAITING,
                requested_at=now(),
            )
            await store.records.add_lobby_request(waiting)
            response.status_code = 202
            return LobbyWaitingResponse(status="waiting", request_id=waiting.request_id, ticket=ticket)
        return issue(
            meeting,
            secrets.token_urlsafe(12),
            body.display_name,
            role,
            publish=body.publish,
            subscribe=body.subscribe,
        )

    def issue(
        meeting: Meeting, participant_id: str, name: str, role: Role, *, publish: bool, subscribe: bool
    ) -> JoinResponse:
        url, hashes = deps.join_target(meeting)
        return issue_join(
            deps.signer,
            meeting,
            participant_id=participant_id,
            display_name=name,
            role=role,
            publish=publish and role is not Role.VIEWER,
            subscribe=subscribe,
            url=url,
            hashes=hashes,
            now=deps.clock(),
        )

    @app.post("/v1/meetings/{meeting_id}/lobby/poll")
    async def poll_lobby(
        meeting_id: str, request: Request, response: Response
    ) -> JoinResponse | LobbyWaitingResponse:
        body = await parse_body(request, LobbyPollRequest, empty_means_object=False)
        meeting = await existing(store, meeting_id)
        waiting = await store.records.lobby_request(meeting_id, _ticket_hash(body.ticket))
        if waiting is None:
            raise ApiError(
                404, "lobby_request_not_found", "no lobby request with this ticket for this meeting"
            )
        if meeting.ended_at is not None:
            raise ApiError(410, "meeting_ended", f"meeting {meeting_id!r} has ended")
        if waiting.status is LobbyStatus.DENIED:
            raise ApiError(403, "lobby_denied", "a host did not let you in")
        if waiting.status is LobbyStatus.WAITING:
            response.status_code = 202
            return LobbyWaitingResponse(status="waiting", request_id=waiting.request_id, ticket=body.ticket)
        role = Role.VIEWER if waiting.viewer else Role.PARTICIPANT
        return issue(
            meeting,
            waiting.participant_id,
            waiting.display_name,
            role,
            publish=waiting.publish,
            subscribe=waiting.subscribe,
        )

    @app.get("/v1/meetings/{meeting_id}/lobby")
    async def list_lobby(meeting_id: str, request: Request) -> LobbyListResponse:
        await hosted(request, meeting_id)
        waiting = await store.records.waiting(meeting_id, limit=MAX_LOBBY_LIST)
        return LobbyListResponse(
            waiting=[
                LobbyEntry(
                    request_id=w.request_id,
                    display_name=w.display_name,
                    user_id=w.user_id,
                    viewer=w.viewer,
                    requested_at=w.requested_at.isoformat(),
                )
                for w in waiting
            ]
        )

    @app.post("/v1/meetings/{meeting_id}/lobby/{request_id}/{decision}")
    async def decide_lobby(meeting_id: str, request_id: str, decision: str, request: Request) -> LobbyEntry:
        if decision not in {"admit", "deny"}:
            raise ApiError(
                404, "not_found", f"nothing at {request.url.path}: the decisions are admit and deny"
            )
        attempt = AuditAction.LOBBY_ADMIT if decision == "admit" else AuditAction.LOBBY_DENY
        _, user_id = await hosted(request, meeting_id, attempt)
        status = LobbyStatus.ADMITTED if decision == "admit" else LobbyStatus.DENIED
        decided, changed = await store.records.decide_lobby_request(
            meeting_id, request_id, status=status, by=user_id, at=now()
        )
        if decided is None:
            raise ApiError(404, "lobby_request_not_found", f"no lobby request {request_id!r} in this meeting")
        if not changed:
            raise ApiError(409, "lobby_request_decided", f"this request was already {decided.status.value}")
        await audit(attempt, user_id, request, f"{meeting_id} {request_id} ({decided.display_name})")
        return LobbyEntry(
            request_id=decided.request_id,
            display_name=decided.display_name,
            user_id=decided.user_id,
            viewer=decided.viewer,
            requested_at=decided.requested_at.isoformat(),
        )

    # --- history and recordings ------------------------------------------------------------------------

    @app.get("/v1/meetings/{meeting_id}/history")
    async def meeting_history(meeting_id: str, request: Request) -> HistoryResponse:
        await hosted(request, meeting_id)
        after = _int_query(request, "after", 0, 0, 2**62)
        limit = _int_query(request, "limit", MAX_HISTORY_PAGE, 1, MAX_HISTORY_PAGE)
        await deps.history.collect_once()
        events = await store.records.history(meeting_id, limit=limit, after=after)
        return HistoryResponse(
            events=[
                HistoryEntry(
                    event_id=e.event_id,
                    at=e.at.isoformat(),
                    participant_id=e.participant_id,
                    display_name=e.display_name,
                    role=e.role,
                    kind=e.kind.value,
                    reason=e.reason,
                )
                for e in events
            ],
            next_after=events[-1].event_id if events else after,
        )

    @app.post("/v1/meetings/{meeting_id}/recordings", status_code=201)
    async def add_recording(meeting_id: str, request: Request) -> RecordingResponse:
        meeting, user_id = await hosted(request, meeting_id, AuditAction.RECORDING_CREATE)
        body = await parse_body(request, RecordingRequest, empty_means_object=False)
        if not meeting.settings.recording_allowed:
            raise ApiError(409, "recording_not_allowed", f"meeting {meeting_id!r} does not allow recording")
        if body.ended_at is not None and body.ended_at < body.started_at:
            raise ApiError(422, "invalid_request", "ended_at: must not be before started_at")
        recording = Recording(
            recording_id=secrets.token_urlsafe(12),
            meeting_id=meeting_id,
            created_at=now(),
            created_by=user_id,
            started_at=body.started_at,
            ended_at=body.ended_at,
            location=body.location,
            size_bytes=body.size_bytes,
        )
        await store.records.add_recording(recording)
        await audit(AuditAction.RECORDING_CREATE, user_id, request, f"{meeting_id} {recording.recording_id}")
        return recording_response(recording)

    @app.get("/v1/meetings/{meeting_id}/recordings")
    async def list_recordings(meeting_id: str, request: Request) -> RecordingListResponse:
        await hosted(request, meeting_id)
        return RecordingListResponse(
            recordings=[recording_response(r) for r in await store.records.recordings(meeting_id)]
        )


async def existing(store: MeetingStore, meeting_id: str) -> Meeting:
    meeting = await store.get(meeting_id) if _MEETING_ID_RE.fullmatch(meeting_id) else None
    if meeting is None:
        raise ApiError(404, "meeting_not_found", f"no meeting {meeting_id!r}")
    return meeting


def _check_guest_and_schedule(meeting: Meeting, user_id: str | None, now: datetime) -> None:
    if user_id is None and not meeting.settings.guests_allowed:
        raise ApiError(
            403,
            "guests_not_allowed",
            f"meeting {meeting.meeting_id!r} admits only signed-in accounts; sign in",
        )
    start = meeting.scheduled_start
    if start is not None and now < start - timedelta(seconds=EARLY_JOIN_S):
        raise ApiError(
            403,
            "meeting_not_started",
            f"meeting {meeting.meeting_id!r} starts at {start.isoformat()}; "
            f"joins open {EARLY_JOIN_S // 60} minutes before",
        )


def _settings(current: RoomSettings, body: SettingsBody) -> RoomSettings:
    return RoomSettings(
        max_participants=current.max_participants if body.max_participants is None else body.max_participants,
        e2ee_required=current.e2ee_required if body.e2ee_required is None else body.e2ee_required,
        guests_allowed=current.guests_allowed if body.guests_allowed is None else body.guests_allowed,
        lobby=current.lobby if body.lobby is None else body.lobby,
        recording_allowed=current.recording_allowed
        if body.recording_allowed is None
        else body.recording_allowed,
    )


def _ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, "invalid_request", f"{name}: must be an integer from {low} to {high}")
    return int(raw)


def _encode_cursor(cursor: PageCursor) -> str:
    raw = json.dumps([cursor.created_at.isoformat(), cursor.meeting_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(raw: str | None) -> PageCursor | None:
    if raw is None:
        return None
    try:
        created, meeting_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        cursor = PageCursor(datetime.fromisoformat(created), meeting_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API gave out") from None
    if cursor.created_at.tzinfo is None or not isinstance(meeting_id, str):
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API gave out")
    return cursor
