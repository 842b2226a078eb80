"""The heartbeat table: what the supervisor writes and a worker writes is what a second mapping reads."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import posix_ipc  # type: ignore[import-not-found]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from darktower.workers.heartbeat import (
    HeartbeatError,
    HeartbeatTable,
    NoHeartbeatTableError,
    WorkerRecord,
    WorkerState,
    segment_name,
)

WORD = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.fixture
def name() -> Iterator[str]:
    table = f"/darktower-test-{uuid.uuid4().hex[:12]}"
    yield table
    HeartbeatTable.unlink(table)


def test_a_worker_beat_and_the_supervisor_fields_read_back_through_another_mapping(name: str) -> None:
    with HeartbeatTable.create(
        name, 3, supervisor_pid=4242, now_ns=1_000, heartbeat_timeout_ns=3_000_000_000
    ) as supervisor:
        supervisor.worker_spawned(1, pid=777, now_ns=2_000, restarts=4)
        supervisor.set_port(1, 4434)
        supervisor.supervisor_beat(5_000)
        with HeartbeatTable.attach(name) as worker:
            assert worker.slots == 3
            worker.beat(1, 3_000, connections=12, meetings=2, ring_lag=40)
        supervisor.set_state(1, WorkerState.RUNNING)
        assert supervisor.beat_ns(1) == 3_000
        with HeartbeatTable.attach(name) as reader:
            snapshot = reader.snapshot()
    assert snapshot.supervisor_pid == 4242
    assert (snapshot.supervisor_started_ns, snapshot.supervisor_beat_ns) == (1_000, 5_000)
    assert snapshot.heartbeat_timeout_ns == 3_000_000_000
    assert snapshot.workers[1] == WorkerRecord(
        worker=1,
        pid=777,
        state=WorkerState.RUNNING,
        started_ns=2_000,
        beat_ns=3_000,
        restarts=4,
        connections=12,
        meetings=2,
        port=4434,
        ring_lag=40,
    )
    assert snapshot.workers[0] == WorkerRecord(0, 0, WorkerState.EMPTY, 0, 0, 0, 0, 0, 0, 0)


def test_a_new_process_in_a_slot_starts_with_no_heartbeat_and_no_load(name: str) -> None:
    with HeartbeatTable.create(name, 1, supervisor_pid=1, now_ns=0, heartbeat_timeout_ns=1) as table:
        table.worker_spawned(0, pid=10, now_ns=100, restarts=0)
        table.beat(0, 200, connections=5, meetings=1, ring_lag=9)
        table.worker_spawned(0, pid=11, now_ns=300, restarts=1)
        record = table.snapshot().workers[0]
    assert (record.pid, record.state, record.beat_ns, record.connections, record.meetings) == (
        11,
        WorkerState.STARTING,
        0,
        0,
        0,
    )
    assert record.ring_lag == 0
    assert (record.started_ns, record.restarts) == (300, 1)


@given(pid=WORD, beat=WORD, connections=WORD, meetings=WORD, lag=WORD)
def test_every_64_bit_value_survives(pid: int, beat: int, connections: int, meetings: int, lag: int) -> None:
    name = f"/darktower-test-{uuid.uuid4().hex[:12]}"
    try:
        with HeartbeatTable.create(name, 1, supervisor_pid=pid, now_ns=0, heartbeat_timeout_ns=0) as table:
            table.beat(0, beat, connections=connections, meetings=meetings, ring_lag=lag)
            snapshot = table.snapshot()
    finally:
        HeartbeatTable.unlink(name)
    record = snapshot.workers[0]
    assert (
        snapshot.supervisor_pid,
        record.beat_ns,
        record.connections,
        record.meetings,
        record.ring_lag,
    ) == (
        pid,
        beat,
        connections,
        meetings,
        lag,
    )


def test_a_missing_table_says_so_and_unlink_reports_it(name: str) -> None:
    with pytest.raises(NoHeartbeatTableError, match="no heartbeat table"):
        HeartbeatTable.attach(name)
    assert HeartbeatTable.unlink(name) is False


def test_creating_a_table_that_exists_fails(name: str) -> None:
    with HeartbeatTable.create(name, 1, supervisor_pid=1, now_ns=0, heartbeat_timeout_ns=1):
        with pytest.raises(HeartbeatError, match="cannot create"):
            HeartbeatTable.create(name, 1, supervisor_pid=1, now_ns=0, heartbeat_timeout_ns=1)
        assert HeartbeatTable.unlink(name) is True


def test_a_segment_that_is_not_a_table_is_refused(name: str) -> None:
    segment = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=384)
    os.write(segment.fd, b"not a heartbeat table".ljust(384, b"\0"))
    segment.close_fd()
    with pytest.raises(HeartbeatError, match="is not a version-2 heartbeat table"):
        HeartbeatTable.attach(name)


@pytest.mark.parametrize("slots", [0, 4097])
def test_a_slot_count_out_of_range_is_refused(name: str, slots: int) -> None:
    with pytest.raises(HeartbeatError, match="1 to 4096 slots"):
        HeartbeatTable.create(name, slots, supervisor_pid=1, now_ns=0, heartbeat_timeout_ns=1)


def test_a_worker_index_beyond_the_table_is_refused(name: str) -> None:
    with (
        HeartbeatTable.create(name, 2, supervisor_pid=1, now_ns=0, heartbeat_timeout_ns=1) as table,
        pytest.raises(HeartbeatError, match="worker 2 has no slot in a table of 2"),
    ):
        table.beat(2, 1, connections=0, meetings=0, ring_lag=0)


def test_the_name_depends_only_on_the_resolved_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert segment_name("data") == segment_name(tmp_path / "data") == segment_name(f"{tmp_path}/x/../data")
    assert segment_name(tmp_path / "data") != segment_name(tmp_path / "other")
    assert segment_name("data").startswith("/darktower-")
    assert len(segment_name("data")) < 255
