"""The control plane's client of the workers' admin channels (`darktower.workers.admin`, the protocol).

`WorkerAdmin` reaches the workers of this node through their unix sockets in the data directory: a host
action goes to the worker that owns the meeting (`darktower.workers.shard.owner_index`), a snapshot and
the join/leave events are read from every worker. Each request opens a connection, sends one JSON line and
reads one, within `timeout_s`; a worker that does not answer in time (restarting, stuck, or not running)
raises `WorkerUnavailableError`, and a refusal raises `WorkerRefusedError` with the worker's code.

It is also the `LiveMeetingsSource` of the admin API (`darktower.control.admin_api`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Final

from darktower.control.admin_api import LiveMeeting, LiveSnapshot
from darktower.control.store import ControlError
from darktower.workers.admin import MAX_LINE_BYTES, socket_path
from darktower.workers.shard import owner_index

DEFAULT_TIMEOUT_S: Final = 2.0
HOST_ACTIONS: Final = frozenset({"mute", "remove", "lock", "unlock", "end"})


class WorkerUnavailableError(ControlError):
    def __init__(self, index: int, why: str) -> None:
        super().__init__(f"worker {index} cannot be reached: {why}")
        self.index = index


class WorkerRefusedError(ControlError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WorkerAdmin:
    def __init__(self, data_dir: str | Path, workers: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._data_dir = Path(data_dir)
        self.workers = workers
        self._timeout_s = timeout_s

    def owner(self, meeting_id: str) -> int:
        return owner_index(meeting_id, self.workers)

    async def request(self, index: int, body: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer to `body` (whatever its `ok`); WorkerUnavailableError."""
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await asyncio.open_unix_connection(
                    socket_path(self._data_dir, index), limit=MAX_LINE_BYTES * 64
                )
                try:
                    writer.write(json.dumps(body).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
        except TimeoutError:
            raise WorkerUnavailableError(index, f"no answer within {self._timeout_s} s") from None
        except (OSError, ValueError) as exc:
            raise WorkerUnavailableError(index, str(exc) or type(exc).__name__) from None
        try:
            answer = json.loads(line)
        except ValueError:
            raise WorkerUnavailableError(index, "its answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WorkerUnavailableError(index, "its answer is not a JSON object")
        return answer

    async def host_action(self, meeting_id: str, action: str, participant_id: str = "") -> None:
        """Has the meeting's owner carry out `action` (one of HOST_ACTIONS) as a host would."""
        answer = await self.request(
            self.owner(meeting_id),
            {
                "op": "host_action",
                "meeting_id": meeting_id,
                "action": action,
                "participant_id": participant_id,
            },
        )
        if answer.get("ok") is not True:
            raise WorkerRefusedError(str(answer.get("code")), str(answer.get("message")))

    async def snapshot(self) -> tuple[dict[int, list[dict[str, Any]]], list[int]]:
        """Every reachable worker's live meetings by worker index, and the unreachable workers."""
        answers = await asyncio.gather(
            *(self.request(index, {"op": "snapshot"}) for index in range(self.workers)),
            return_exceptions=True,
        )
        meetings: dict[int, list[dict[str, Any]]] = {}
        unreachable: list[int] = []
        for index, answer in enumerate(answers):
            if (
                isinstance(answer, dict)
                and answer.get("ok") is True
                and isinstance(answer.get("meetings"), list)
            ):
                meetings[index] = answer["meetings"]
            elif isinstance(answer, BaseException) and not isinstance(answer, WorkerUnavailableError):
                raise answer
            else:
                unreachable.append(index)
        return meetings, unreachable

    async def live_meetings(self) -> LiveSnapshot:
        by_worker, unreachable = await self.snapshot()
        return LiveSnapshot(
            meetings=[
                LiveMeeting(
                    meeting_id=meeting["meeting_id"],
                    worker=index,
                    participants=len(meeting["participants"]),
                    locked=meeting["locked"],
                )
                for index, meetings in by_worker.items()
                for meeting in meetings
            ],
            unreachable_workers=unreachable,
        )

    async def events(self, index: int, after: int) -> dict[str, Any]:
        answer = await self.request(index, {"op": "events", "after": after})
        if answer.get("ok") is not True:
            raise WorkerRefusedError(str(answer.get("code")), str(answer.get("message")))
        return answer
