"""`darktower status` reading a heartbeat table written here, in place of a running server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from darktower.supervisor.cli import main
from darktower.workers.heartbeat import HeartbeatTable, WorkerState, segment_name


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    HeartbeatTable.unlink(segment_name(tmp_path / "data"))


def _table(data_dir: Path, supervisor_pid: int, now_ns: int) -> HeartbeatTable:
    table = HeartbeatTable.create(
        segment_name(data_dir),
        2,
        supervisor_pid=supervisor_pid,
        now_ns=now_ns,
        heartbeat_timeout_ns=3 * 10**9,
    )
    table.worker_spawned(0, pid=1234, now_ns=now_ns, restarts=2)
    table.set_port(0, 4433)
    table.set_state(0, WorkerState.RUNNING)
    table.beat(0, now_ns, connections=7, meetings=3, ring_lag=12)
    table.worker_spawned(1, pid=1240, now_ns=now_ns, restarts=0)
    table.set_state(1, WorkerState.RESTARTING)
    return table


def test_json_lists_every_worker(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic_ns() - 90 * 10**9
    with _table(data_dir, os.getpid(), start):
        assert main(["status", "--json", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data_dir"] == str(data_dir)
    assert report["heartbeat_timeout_s"] == 3.0
    assert report["supervisor"]["pid"] == os.getpid()
    assert report["supervisor"]["uptime_s"] >= 90
    first, second = report["workers"]
    assert {k: v for k, v in first.items() if k not in ("uptime_s", "heartbeat_age_s")} == {
        "index": 0,
        "pid": 1234,
        "state": "running",
        "port": 4433,
        "restarts": 2,
        "connections": 7,
        "meetings": 3,
        "ring_lag": 12,
    }
    assert first["uptime_s"] >= 90
    assert first["heartbeat_age_s"] >= 90
    assert (second["state"], second["uptime_s"], second["heartbeat_age_s"], second["port"]) == (
        "restarting",
        None,
        None,
        None,
    )


def test_the_table_has_a_row_per_worker(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The status is read 3725 s after the table was written (the clock moves on, not back: a young machine's
    # monotonic clock may be below 3725 s).
    start = time.monotonic_ns()
    later = SimpleNamespace(monotonic_ns=lambda: start + 3725 * 10**9)
    with _table(data_dir, os.getpid(), start):
        monkeypatch.setattr("darktower.supervisor.status.time", later)
        assert main(["status", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"supervisor pid {os.getpid()}, up 1h02m, data directory {data_dir}"
    assert lines[1].split() == [
        "WORKER",
        "PID",
        "STATE",
        "PORT",
        "UPTIME",
        "RESTARTS",
        "CONNECTIONS",
        "MEETINGS",
        "RING-LAG",
        "HEARTBEAT",
    ]
    assert lines[2].split() == [
        "0",
        "1234",
        "running",
        "4433",
        "1h02m",
        "2",
        "7",
        "3",
        "12",
        "3725.0s",
        "ago",
    ]
    assert lines[3].split() == ["1", "1240", "restarting", "-", "-", "0", "0", "0", "0", "-"]


def test_no_server_is_a_clear_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"darktower: no server is running with the data directory {data_dir} ")


def test_a_table_left_by_a_dead_supervisor_is_no_server(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with _table(data_dir, gone.pid, time.monotonic_ns()):
        assert main(["status", "--json", "--data-dir", str(data_dir)]) == 1
    assert f"left by supervisor pid {gone.pid}, which is gone" in capsys.readouterr().err
