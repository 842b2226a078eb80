"""`darktower status`: the workers of the server running on a data directory, from its heartbeat table.

It reads the shared-memory table the supervisor and its workers keep (`darktower.workers.heartbeat`), so it
needs no network access to the server, only the server's user (the table is mode 0600) and the same data
directory. It prints a table, or with `--json` one object:

    {"data_dir", "heartbeat_timeout_s",
     "supervisor": {"pid", "uptime_s", "heartbeat_age_s"},
     "workers": [{"index", "pid", "state", "port", "uptime_s", "restarts", "connections", "meetings",
                  "ring_lag", "heartbeat_age_s"}]}

`meetings` are those whose state machine the worker runs (with several workers, the ones it owns);
`ring_lag` is how many records it has yet to read from the other workers' media rings.

`uptime_s` is null for a worker with no process (restarting, stopped); `heartbeat_age_s` is null until its
process first beat. Exit status 0 when a server runs; 1, with the reason on stderr, when none does (no
table, or a table left by a supervisor that was killed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

from darktower.supervisor.process import SupervisorError
from darktower.workers.heartbeat import (
    HeartbeatError,
    HeartbeatTable,
    NoHeartbeatTableError,
    TableSnapshot,
    WorkerState,
    segment_name,
)

_NOT_RUNNING = frozenset({WorkerState.EMPTY, WorkerState.RESTARTING, WorkerState.STOPPED})


class NoServerError(SupervisorError):
    """No server runs on the data directory."""


def read_status(data_dir: str) -> dict[str, Any]:
    """The report `--json` prints. Raises NoServerError, or HeartbeatError when the table is unreadable."""
    name = segment_name(data_dir)
    try:
        table = HeartbeatTable.attach(name)
    except NoHeartbeatTableError:
        raise NoServerError(
            f"no server is running with the data directory {data_dir} (no heartbeat table {name})"
        ) from None
    with table:
        snapshot = table.snapshot()
    now_ns = time.monotonic_ns()
    if not _alive(snapshot.supervisor_pid):
        raise NoServerError(
            f"no server is running with the data directory {data_dir} (its heartbeat table was left by "
            f"supervisor pid {snapshot.supervisor_pid}, which is gone)"
        )
    return _report(str(Path(data_dir).expanduser().resolve()), snapshot, now_ns)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)


def _report(data_dir: str, snapshot: TableSnapshot, now_ns: int) -> dict[str, Any]:
    workers = [
        {
            "index": worker.worker,
            "pid": worker.pid or None,
            "state": worker.state.name.lower(),
            "port": worker.port or None,
            "uptime_s": None if worker.state in _NOT_RUNNING else _seconds(now_ns - worker.started_ns),
            "restarts": worker.restarts,
            "connections": worker.connections,
            "meetings": worker.meetings,
            "ring_lag": worker.ring_lag,
            "heartbeat_age_s": _seconds(now_ns - worker.beat_ns) if worker.beat_ns else None,
        }
        for worker in snapshot.workers
    ]
    return {
        "data_dir": data_dir,
        "heartbeat_timeout_s": _seconds(snapshot.heartbeat_timeout_ns),
        "supervisor": {
            "pid": snapshot.supervisor_pid,
            "uptime_s": _seconds(now_ns - snapshot.supervisor_started_ns),
            "heartbeat_age_s": _seconds(now_ns - snapshot.supervisor_beat_ns),
        },
        "workers": workers,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s"


def render(report: dict[str, Any]) -> str:
    """The report as a human-readable table."""
    supervisor = report["supervisor"]
    lines = [
        f"supervisor pid {supervisor['pid']}, up {_duration(supervisor['uptime_s'])}, data directory "
        + report["data_dir"]
    ]
    header = (
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
    )
    rows = [header]
    for worker in report["workers"]:
        age = worker["heartbeat_age_s"]
        rows.append(
            (
                str(worker["index"]),
                str(worker["pid"] or "-"),
                worker["state"],
                str(worker["port"] or "-"),
                _duration(worker["uptime_s"]),
                str(worker["restarts"]),
                str(worker["connections"]),
                str(worker["meetings"]),
                str(worker["ring_lag"]),
                "-" if age is None else f"{age:.1f}s ago",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines.extend(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n".join(lines)


def status(data_dir: str, *, as_json: bool, out: IO[str], err: IO[str]) -> int:
    """`darktower status`: prints the report; returns the exit status."""
    try:
        report = read_status(data_dir)
    except (NoServerError, HeartbeatError) as exc:
        print(f"darktower: {exc}", file=err)
        return 1
    print(json.dumps(report, indent=2) if as_json else render(report), file=out)
    return 0
