"""`HistoryCollector`: moves the joins and leaves the workers report (their admin channels' event logs) into
the durable meeting history.

Design choice: the worker is the one place that knows when a participant really joined and left (a join
token may never be used; a connection may drop), so history comes from the workers, not from token
issuance. Each worker keeps a bounded log with sequence numbers per incarnation; the collector remembers, per
worker, the incarnation and sequence it stored up to, and stores each event under the source
`<worker>:<incarnation>:<seq>`, which the store keeps once. So a restarted collector (or two control-plane
processes collecting at once) stores nothing twice, and a restarted worker starts a new incarnation.

What can be lost, and is logged: events a worker dropped from its bounded log before anyone collected them
(a control plane down for a long time), and events of a worker that died before they were collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any, Final

from darktower.control.meeting_records import HistoryEvent, HistoryKind, MeetingRecords
from darktower.control.store import StoreUnavailableError
from darktower.control.worker_admin import WorkerAdmin, WorkerRefusedError, WorkerUnavailableError
from darktower.workers.admin import MAX_EVENTS_PER_READ

log = logging.getLogger(__name__)

COLLECT_INTERVAL_S: Final = 1.0


class HistoryCollector:
    def __init__(self, workers: WorkerAdmin, records: MeetingRecords) -> None:
        self._workers = workers
        self._records = records
        self._cursors: dict[int, tuple[str, int]] = {}
        """Worker index -> (incarnation, last sequence stored)."""

    async def collect_once(self) -> int:
        """Collects what every reachable worker has; how many events were new. Unreachable workers are
        skipped (tried again next time); StoreUnavailableError when the store is down (nothing is lost:
        the cursor moves only after a store write)."""
        stored = 0
        for index in range(self._workers.workers):
            with contextlib.suppress(WorkerUnavailableError, WorkerRefusedError):
                stored += await self._collect(index)
        return stored

    async def run(self, interval_s: float = COLLECT_INTERVAL_S) -> None:
        """Collects every `interval_s` until cancelled."""
        while True:
            try:
                await self.collect_once()
            except StoreUnavailableError as exc:
                log.warning("meeting history not collected: %s", exc)
            except Exception:
                log.exception("meeting history collection failed")
            await asyncio.sleep(interval_s)

    async def _collect(self, index: int) -> int:
        stored = 0
        while True:
            incarnation, after = self._cursors.get(index, ("", 0))
            answer = await self._workers.events(index, after)
            if answer.get("incarnation") != incarnation and after:
                self._cursors[index] = (str(answer.get("incarnation")), 0)
                continue
            events: list[dict[str, Any]] = answer.get("events", [])
            if answer.get("lost"):
                log.warning(
                    "worker %d dropped %s join/leave events before they were collected", index, answer["lost"]
                )
            incarnation = str(answer.get("incarnation"))
            stored += await self._records.record_history([_event(index, incarnation, e) for e in events])
            self._cursors[index] = (incarnation, int(answer.get("next", after)))
            if len(events) < MAX_EVENTS_PER_READ:
                return stored


def _event(index: int, incarnation: str, event: dict[str, Any]) -> HistoryEvent:
    return HistoryEvent(
        source=f"{index}:{incarnation}:{event['seq']}",
        meeting_id=str(event["meeting_id"]),
        participant_id=str(event["participant_id"]),
        display_name=str(event["display_name"]),
        role=str(event["role"]),
        kind=HistoryKind(event["kind"]),
        reason=str(event["reason"]),
        at=datetime.fromtimestamp(float(event["at"]), UTC),
    )
