"""The worker's admin channel: how the control plane on the same node reaches one worker.

A unix stream socket per worker, `<data_dir>/admin/worker-<index>.sock` (the directory is mode 0700: only
the server's own user may act on meetings), speaking JSON lines: each request is one JSON object on one
line, answered by one JSON object on one line, any number per connection. Requests:

- `{"op": "snapshot"}` -> `{"ok": true, "worker": k, "meetings": [<Meeting.snapshot()>, ...]}`: the live
  meetings with their participants (id, name, role, e2ee, may publish/subscribe) and tracks.
- `{"op": "host_action", "meeting_id": m, "action": "mute"|"remove"|"lock"|"unlock"|"end",
  "participant_id": p}` -> `{"ok": true}`, carried out as if a host had sent it (`WorkerCore.host_action`).
- `{"op": "events", "after": n}` -> `{"ok": true, "worker": k, "incarnation": i, "events": [...],
  "next": n2, "lost": l}`: the joins and leaves after sequence number `n` (each `{"seq", "at" (Unix
  seconds), "meeting_id", "participant_id", "display_name", "role", "kind": "joined"|"left", "reason"}`),
  at most `MAX_EVENTS_PER_READ`; `lost` counts events that were dropped from the bounded log before being
  read. `incarnation` changes when the worker restarts (sequence numbers start again at 1).

A refusal is `{"ok": false, "code": c, "message": why}` with `code` one of `invalid_request` (not JSON,
unknown op, bad field), `unknown_participant` (nobody of that id, or nobody at all, in the meeting here),
`refused` (any other refusal of the meeting), `internal`. Nothing a client sends can stop the worker: a line over `MAX_LINE_BYTES` closes that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Final, Protocol

from darktower.core.tokens import JoinGrant
from darktower.proto import signaling_pb2 as pb
from darktower.workers.admin_state import Oversight
from darktower.workers.errors import RequestRefusedError, WorkerError

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 64 * 1024
MAX_EVENTS_PER_READ: Final = 1000
EVENT_LOG_SIZE: Final = 20_000
"""Joins and leaves kept for the control plane to collect; older ones are dropped (and counted) first."""
ACTIONS: Final[dict[str, pb.HostAction.Kind]] = {
    "mute": pb.HostAction.KIND_MUTE,
    "remove": pb.HostAction.KIND_REMOVE,
    "lock": pb.HostAction.KIND_LOCK,
    "unlock": pb.HostAction.KIND_UNLOCK,
    "end": pb.HostAction.KIND_END,
}
_REFUSALS: Final[dict[int, str]] = {pb.ERROR_CODE_UNKNOWN_PARTICIPANT: "unknown_participant"}
_MAX_ID_CHARS: Final = 128
_MAX_SOCKET_PATH_BYTES: Final = 107


def socket_path(data_dir: str | Path, index: int) -> Path:
    return Path(data_dir) / "admin" / f"worker-{index}.sock"


class AdminTarget(Protocol):
    """What the channel needs of the worker's server."""

    @property
    def oversight(self) -> Oversight: ...

    def run_host_action(self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str) -> None:
        """Carries out the action now; `RequestRefusedError` when it cannot be done."""

    def live_meetings(self) -> list[dict[str, Any]]: ...


class EventLog:
    """The `Journal` the channel serves: every join and leave with its wall-clock time and a sequence
    number, in a bounded log."""

    def __init__(self, size: int = EVENT_LOG_SIZE) -> None:
        self.incarnation = secrets.token_hex(6)
        self._events: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0
        self._roles: dict[tuple[str, str], tuple[str, str]] = {}
        """(meeting, participant) -> (display name, role) while it is in, so a leave names them too."""

    def joined(self, meeting_id: str, grant: JoinGrant) -> None:
        self._roles[meeting_id, grant.participant_id] = (grant.display_name, grant.role.value)
        self._append(meeting_id, grant.participant_id, "joined", "")

    def left(self, meeting_id: str, participant_id: str, reason: str) -> None:
        self._append(meeting_id, participant_id, "left", reason)
        self._roles.pop((meeting_id, participant_id), None)

    def since(self, after: int) -> tuple[list[dict[str, Any]], int, int]:
        """(events after `after`, the sequence to ask after next, how many after `after` were dropped)."""
        first = self._events[0]["seq"] if self._events else self._seq + 1
        lost = max(0, first - after - 1)
        start = max(0, after + 1 - first)
        events = [self._events[i] for i in range(start, min(len(self._events), start + MAX_EVENTS_PER_READ))]
        return events, events[-1]["seq"] if events else max(after, first - 1), lost

    def _append(self, meeting_id: str, participant_id: str, kind: str, reason: str) -> None:
        self._seq += 1
        name, role = self._roles.get((meeting_id, participant_id), ("", ""))
        self._events.append(
            {
                "seq": self._seq,
                "at": time.time(),
                "meeting_id": meeting_id,
                "participant_id": participant_id,
                "display_name": name,
                "role": role,
                "kind": kind,
                "reason": reason,
            }
        )


class AdminChannel:
    """Serves the admin socket of worker `index` for `target`."""

    def __init__(
        self, server: asyncio.Server, path: Path, target: AdminTarget, index: int, events: EventLog
    ) -> None:
        self._server = server
        self.path = path
        self._inode = _inode(path)
        """A replacement worker may bind the same path before this one closes: only our own file goes."""
        self._target = target
        self._index = index
        self.events = events

    @classmethod
    async def start(cls, data_dir: str | Path, index: int, target: AdminTarget) -> AdminChannel:
        """Listens on the worker's socket (replacing one a dead predecessor left) and makes the channel's
        `EventLog` the journal of `target`'s meetings. `WorkerError` when the socket cannot be made."""
        path = socket_path(data_dir, index)
        if len(str(path).encode()) > _MAX_SOCKET_PATH_BYTES:
            raise WorkerError(f"admin socket path {path} is longer than a unix socket allows")
        events = EventLog()
        channel: AdminChannel | None = None

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert channel is not None
            await channel.serve_connection(reader, writer)

        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.chmod(0o700)
            path.unlink(missing_ok=True)
            server = await asyncio.start_unix_server(serve, path, limit=MAX_LINE_BYTES)
        except OSError as exc:
            raise WorkerError(f"cannot open the admin socket {path}: {exc}") from None
        channel = cls(server, path, target, index, events)
        target.oversight.journal = events
        log.info("admin channel on %s", path, extra={"worker": index})
        return channel

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        if self._inode is not None and _inode(self.path) == self._inode:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self.answer(line)).encode() + b"\n")
                await writer.drain()
        except (ValueError, ConnectionError) as exc:  # ValueError: a line over the limit
            log.warning("admin connection dropped: %s", exc, extra={"worker": self._index})
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def answer(self, line: bytes) -> dict[str, Any]:
        """The response to one request line; never raises."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            return _refusal("invalid_request", f"not JSON: {exc}")
        if not isinstance(request, dict):
            return _refusal("invalid_request", "a request is a JSON object")
        try:
            return self._dispatch(request)
        except _BadRequestError as exc:
            return _refusal("invalid_request", str(exc))
        except RequestRefusedError as exc:
            return _refusal(_REFUSALS.get(exc.code, "refused"), exc.message)
        except Exception:
            log.exception("admin request failed", extra={"worker": self._index})
            return _refusal("internal", "the worker failed to answer; see its log")

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        match request.get("op"):
            case "snapshot":
                return {"ok": True, "worker": self._index, "meetings": self._target.live_meetings()}
            case "host_action":
                action = request.get("action")
                if action not in ACTIONS:
                    raise _BadRequestError(f"action must be one of {sorted(ACTIONS)}")
                meeting_id = _text(request, "meeting_id")
                participant_id = _text(request, "participant_id", required=False)
                self._target.run_host_action(meeting_id, ACTIONS[action], participant_id)
                log.info(
                    "admin %s", action, extra={"meeting_id": meeting_id, "participant_id": participant_id}
                )
                return {"ok": True}
            case "events":
                after = request.get("after", 0)
                if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                    raise _BadRequestError("after must be a non-negative integer")
                events, following, lost = self.events.since(after)
                return {
                    "ok": True,
                    "worker": self._index,
                    "incarnation": self.events.incarnation,
                    "events": events,
                    "next": following,
                    "lost": lost,
                }
            case _:
                raise _BadRequestError("op must be snapshot, host_action or events")


class _BadRequestError(WorkerError):
    pass


def _text(request: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = request.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value) or len(value) > _MAX_ID_CHARS:
        raise _BadRequestError(f"{name} must be a string of 1 to {_MAX_ID_CHARS} characters")
    return value


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _refusal(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "message": message}
