"""Meeting reads that survive a durable-store outage: `GET /v1/meetings/<id>` is answered from the ephemeral
cache when PostgreSQL cannot be reached, instead of 503.

Safe because that read is the same for every caller (public meeting details) and a stale copy misleads
nobody for long: each successful read stores its answer (`cache_fill` under the version read before the
request, so a fill racing a change cannot put an old answer back), and every successful change to the
meeting (any other method on `/v1/meetings/<id>[/...]`, but joins and lobby polls) invalidates it. While the durable store is down a
cached answer is served with `X-Darktower-Stale: durable-store-unavailable`; a meeting never read before
the outage still answers 503 `store_unavailable`. Writes are never cached or queued: they answer 503 and
nothing is accepted that could be lost. A cache that is itself unreachable (Redis down too) changes
nothing: the route's own answer goes out.

An ASGI middleware, so it sees what the route answered without knowing how the route works.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darktower.control.ephemeral import CachedValue, EphemeralStore
from darktower.control.metrics import error_code_of
from darktower.control.store import StoreUnavailableError

log = logging.getLogger(__name__)

CACHE_TTL_S: Final = 3600.0
"""How long a meeting's last answer is kept for an outage."""
STALE_HEADER: Final = (b"x-darktower-stale", b"durable-store-unavailable")
_MEETING_PATH: Final = re.compile(r"/v1/meetings/([A-Za-z0-9_-]{1,64})(/.*)?")
_UNCHANGING: Final = frozenset({"/join", "/lobby/poll"})
"""Requests that never change the meeting's details: the hot path of every participant, so they skip the
invalidation (a Redis round trip). Every other change invalidates, routes added later included."""


def cache_key(meeting_id: str) -> str:
    return f"meeting-view:{meeting_id}"


class MeetingReadCache:
    def __init__(self, app: ASGIApp, ephemeral: EphemeralStore) -> None:
        self._app = app
        self._ephemeral = ephemeral

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _MEETING_PATH.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self._app(scope, receive, send)
            return
        key = cache_key(match[1])
        if scope["method"] == "GET" and match[2] is None:
            await self._read(scope, receive, send, key)
            return
        status = 0

        async def note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self._app(scope, receive, note_status)
        if scope["method"] not in {"GET", "HEAD"} and 200 <= status < 300 and match[2] not in _UNCHANGING:
            try:
                await self._ephemeral.cache_invalidate(key)
            except StoreUnavailableError as exc:
                log.warning("cannot invalidate the cached meeting %s: %s", key, exc)

    async def _read(self, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        try:
            cached: CachedValue | None = await self._ephemeral.cache_get(key)
        except StoreUnavailableError:
            cached = None
        start: Message = {}
        body = bytearray()

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self._app(scope, receive, collect)
        status = int(start.get("status", 500))
        if status == 200 and cached is not None:
            try:
                await self._ephemeral.cache_fill(key, bytes(body), version=cached.version, ttl_s=CACHE_TTL_S)
            except StoreUnavailableError as exc:
                log.warning("cannot cache the meeting %s: %s", key, exc)
        elif status == 503 and error_code_of(scope) == "store_unavailable" and cached and cached.value:
            log.warning("durable store unavailable: serving the cached %s", key)
            start = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), STALE_HEADER],
            }
            body = bytearray(cached.value)
        await send(start)
        await send({"type": "http.response.body", "body": bytes(body)})
