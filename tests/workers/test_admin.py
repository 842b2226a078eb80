"""The worker's admin channel over a real unix socket: its JSON-lines protocol, bad input, the event log,
and the control plane's client and history collector on the other end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darktower.control.meeting_history import HistoryCollector
from darktower.control.meeting_records import HistoryKind, InMemoryMeetingRecords
from darktower.control.worker_admin import WorkerAdmin, WorkerRefusedError, WorkerUnavailableError
from darktower.core.tokens import JoinGrant, Role
from darktower.proto import signaling_pb2 as pb
from darktower.workers.admin import MAX_EVENTS_PER_READ, MAX_LINE_BYTES, AdminChannel, EventLog, socket_path
from darktower.workers.admin_state import Oversight
from darktower.workers.errors import RequestRefusedError, WorkerError


class FakeServer:
    """Records what the channel asks; refuses a target named `nobody` like a core would."""

    def __init__(self) -> None:
        self.oversight = Oversight()
        self.actions: list[tuple[str, int, str]] = []
        self.meetings: list[dict[str, Any]] = [{"meeting_id": "m", "locked": True, "participants": [{}, {}]}]

    def run_host_action(self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str) -> None:
        if participant_id == "nobody":
            raise RequestRefusedError(pb.ERROR_CODE_UNKNOWN_PARTICIPANT, "no participant 'nobody'")
        if participant_id == "boom":
            raise RuntimeError("a bug")
        self.actions.append((meeting_id, kind, participant_id))

    def live_meetings(self) -> list[dict[str, Any]]:
        return self.meetings


def grant(participant_id: str, role: Role = Role.PARTICIPANT) -> JoinGrant:
    return JoinGrant(
        meeting_id="m",
        participant_id=participant_id,
        display_name=participant_id.title(),
        can_publish=True,
        can_subscribe=True,
        expires_at=0,
        token_id="t",
        role=role,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "d"


@pytest.fixture
async def channel(data_dir: Path) -> AsyncIterator[tuple[AdminChannel, FakeServer]]:
    server = FakeServer()
    opened = await AdminChannel.start(data_dir, 0, server)
    yield opened, server
    await opened.close()


async def exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(path)
    answers = []
    for line in lines:
        writer.write(line + b"\n")
        await writer.drain()
        answers.append(json.loads(await reader.readline()))
    writer.close()
    await writer.wait_closed()
    return answers


async def test_the_socket_is_private_and_replaces_a_stale_one(data_dir: Path) -> None:
    path = socket_path(data_dir, 3)
    path.parent.mkdir(parents=True)
    path.write_text("left by a dead worker")
    opened = await AdminChannel.start(data_dir, 3, FakeServer())
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert (await exchange(path, b'{"op": "snapshot"}'))[0]["worker"] == 3
    await opened.close()
    assert not path.exists()


async def test_a_replacement_keeps_its_socket_when_its_predecessor_closes(data_dir: Path) -> None:
    old = await AdminChannel.start(data_dir, 0, FakeServer())
    new = await AdminChannel.start(data_dir, 0, FakeServer())
    await old.close()
    assert (await exchange(new.path, b'{"op": "snapshot"}'))[0]["ok"] is True
    await new.close()
    assert not new.path.exists()


async def test_too_long_a_socket_path_is_a_worker_error(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="longer than a unix socket allows"):
        await AdminChannel.start(tmp_path / ("x" * 120), 0, FakeServer())


async def test_requests_and_refusals_on_one_connection(channel: tuple[AdminChannel, FakeServer]) -> None:
    opened, server = channel
    answers = await exchange(
        opened.path,
        b'{"op": "snapshot"}',
        b'{"op": "host_action", "meeting_id": "m", "action": "remove", "participant_id": "p"}',
        b'{"op": "host_action", "meeting_id": "m", "action": "end"}',
        b'{"op": "host_action", "meeting_id": "m", "action": "mute", "participant_id": "nobody"}',
        b"not json",
        b"[1, 2]",
        b'{"op": "reboot"}',
        b'{"op": "host_action", "meeting_id": "m", "action": "ban"}',
        b'{"op": "host_action", "meeting_id": "", "action": "end"}',
        b'{"op": "host_action", "meeting_id": "m", "action": "mute", "participant_id": 7}',
        b'{"op": "events", "after": -1}',
        b'{"op": "host_action", "meeting_id": "m", "action": "mute", "participant_id": "boom"}',
        b'{"op": "snapshot"}',
    )
    assert answers[0] == {"ok": True, "worker": 0, "meetings": server.meetings}
    assert answers[1:3] == [{"ok": True}, {"ok": True}]
    assert server.actions == [("m", pb.HostAction.KIND_REMOVE, "p"), ("m", pb.HostAction.KIND_END, "")]
    assert answers[3] == {"ok": False, "code": "unknown_participant", "message": "no participant 'nobody'"}
    assert [a["code"] for a in answers[4:11]] == ["invalid_request"] * 7
    assert answers[6]["message"] == "op must be snapshot, host_action or events"
    assert answers[11]["code"] == "internal"
    assert answers[12]["ok"] is True


async def test_an_over_long_line_drops_that_connection_only(channel: tuple[AdminChannel, FakeServer]) -> None:
    opened, _ = channel
    reader, writer = await asyncio.open_unix_connection(opened.path)
    writer.write(b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    await writer.drain()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    assert (await exchange(opened.path, b'{"op": "snapshot"}'))[0]["ok"] is True


async def test_the_event_log_pages_and_counts_what_it_dropped() -> None:
    log = EventLog(size=4)
    for n in range(3):
        log.joined("m", grant(f"p{n}", Role.HOST if n == 0 else Role.PARTICIPANT))
    log.left("m", "p1", "removed")
    events, following, lost = log.since(0)
    assert [(e["seq"], e["participant_id"], e["kind"], e["role"]) for e in events] == [
        (1, "p0", "joined", "host"),
        (2, "p1", "joined", "participant"),
        (3, "p2", "joined", "participant"),
        (4, "p1", "left", "participant"),
    ]
    assert (events[3]["display_name"], events[3]["reason"], following, lost) == ("P1", "removed", 4, 0)
    assert log.since(4) == ([], 4, 0)
    log.left("m", "p0", "left")
    log.left("m", "p2", "left")
    events, following, lost = log.since(1)
    assert ([e["seq"] for e in events], following, lost) == ([3, 4, 5, 6], 6, 1)


async def test_the_client_reaches_the_owner_and_reports_refusals(
    data_dir: Path, channel: tuple[AdminChannel, FakeServer]
) -> None:
    _, server = channel
    admin = WorkerAdmin(data_dir, 1)
    await admin.host_action("m", "lock")
    assert server.actions == [("m", pb.HostAction.KIND_LOCK, "")]
    with pytest.raises(WorkerRefusedError) as refused:
        await admin.host_action("m", "remove", "nobody")
    assert refused.value.code == "unknown_participant"
    live = await admin.live_meetings()
    assert [(m.meeting_id, m.worker, m.participants, m.locked) for m in live.meetings] == [("m", 0, 2, True)]
    assert list(live.unreachable_workers) == []


async def test_a_missing_worker_is_unavailable_and_named_in_snapshots(
    data_dir: Path, channel: tuple[AdminChannel, FakeServer]
) -> None:
    admin = WorkerAdmin(data_dir, 3, timeout_s=0.5)
    with pytest.raises(WorkerUnavailableError, match="worker 2 cannot be reached"):
        await admin.request(2, {"op": "snapshot"})
    by_worker, unreachable = await admin.snapshot()
    assert (list(by_worker), unreachable) == ([0], [1, 2])


async def test_history_is_collected_once_and_follows_a_restarted_worker(
    data_dir: Path, channel: tuple[AdminChannel, FakeServer]
) -> None:
    opened, _ = channel
    records = InMemoryMeetingRecords()
    collector = HistoryCollector(WorkerAdmin(data_dir, 2, timeout_s=0.5), records)
    before = time.time()
    opened.events.joined("m", grant("alice"))
    opened.events.left("m", "alice", "disconnected")
    assert await collector.collect_once() == 2
    assert await collector.collect_once() == 0
    assert await HistoryCollector(WorkerAdmin(data_dir, 1), records).collect_once() == 0
    stored = await records.history("m", limit=10)
    assert [(e.participant_id, e.kind, e.reason) for e in stored] == [
        ("alice", HistoryKind.JOINED, ""),
        ("alice", HistoryKind.LEFT, "disconnected"),
    ]
    assert before <= stored[0].at.timestamp() <= time.time()

    opened.events = EventLog()
    opened.events.joined("m", grant("bob"))
    assert await collector.collect_once() == 1
    for n in range(MAX_EVENTS_PER_READ + 5):
        opened.events.joined("big", grant(f"p{n}"))
    assert await collector.collect_once() == MAX_EVENTS_PER_READ + 5


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=10,
)
REQUESTS = st.fixed_dictionaries(
    {"op": st.sampled_from(["snapshot", "host_action", "events", "other"]) | JSON_VALUES},
    optional={
        "meeting_id": JSON_VALUES | st.text(max_size=140),
        "action": st.sampled_from(["mute", "remove", "lock", "unlock", "end"]) | JSON_VALUES,
        "participant_id": JSON_VALUES | st.sampled_from(["nobody", "boom", "p"]),
        "after": JSON_VALUES | st.integers(-5, 10**20),
    },
)


@settings(max_examples=150, deadline=None)
@given(request=REQUESTS | JSON_VALUES, raw=st.binary(max_size=64))
def test_any_request_gets_one_answer_and_never_an_exception(request: Any, raw: bytes) -> None:
    channel = AdminChannel(cast("asyncio.Server", None), Path("unused"), FakeServer(), 0, EventLog())
    for line in (json.dumps(request).encode(), raw):
        answer = channel.answer(line)
        assert answer["ok"] is True or set(answer) == {"ok", "code", "message"}
        json.dumps(answer)
