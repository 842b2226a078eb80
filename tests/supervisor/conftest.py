"""`darktower serve` as a real subprocess, with its stdout and stderr readable line by line with deadlines."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from darktower.workers.cluster_io import unlink_rings
from darktower.workers.cluster_records import MAX_WORKERS
from darktower.workers.heartbeat import HeartbeatTable, segment_name

DARKTOWER = str(Path(sys.executable).with_name("darktower"))
START_TIMEOUT_S = 60.0
"""Two fresh interpreters (worker, control plane) on a shared 2-core machine."""


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without any DARKTOWER_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKTOWER_")}
    env.update(extra)
    return env


class _Lines:
    """Lines of a pipe, collected by a thread, consumed in order by waits with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self._pipe = pipe
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process (and its children, which share the pipe) exited: the pump has met EOF."""
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "a process still holds the pipe open"
        self._pipe.close()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no {what} within {timeout} s; saw:\n" + "\n".join(self.seen[-40:]))

    def rest(self, timeout: float) -> list[str]:
        """Every line until the pipe closes."""
        lines = []
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.seen.append(line)
            lines.append(line)
        self._queue.put(None)
        return lines


class ServeProcess:
    """One `darktower serve` run; `http_url` and `quic_url` are known once `wait_ready` returned."""

    start_timeout = START_TIMEOUT_S

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [DARKTOWER, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.stdout = _Lines(self.process.stdout)
        self.stderr = _Lines(self.process.stderr)
        self.http_url = ""
        self.quic_url = ""

    def wait_ready(self) -> None:
        def url(prefix: str) -> str:
            line = self.stdout.wait_for(lambda s: s.startswith(prefix), START_TIMEOUT_S, repr(prefix))
            return line.removeprefix(prefix)

        self.http_url = url("darktower: serving HTTP API on ")
        self.quic_url = url("darktower: serving WebTransport on ")
        self.stdout.wait_for(lambda s: s == "darktower: ready", START_TIMEOUT_S, "ready line")

    def wait_log(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        """The first JSON log record on stderr whose message matches `pattern` (a regex)."""
        line = self.stderr.wait_for(
            lambda s: _message_matches(s, pattern), timeout, f"log matching {pattern!r}"
        )
        match = re.search(pattern, json.loads(line)["msg"])
        assert match is not None
        return match

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def close(self) -> None:
        """Stops the server if a test left it running (SIGTERM, so its children stop too)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stdout.close()
        self.stderr.close()


def _message_matches(line: str, pattern: str) -> bool:
    try:
        record: Any = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and re.search(pattern, str(record.get("msg", ""))) is not None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Starts `darktower serve --data-dir <tmp>/data --http-port 0 --quic-port 0 --workers 1 [args]` (a
    `--workers` in `args` wins) with the keyword arguments added to its environment; stopped at teardown, and
    the heartbeat table and rings a killed server left behind are removed. One worker unless a test asks for more, so
    tests do not depend on the default or on the machine's cores."""
    started: list[ServeProcess] = []

    def start(*args: str, **env: str) -> ServeProcess:
        base = [
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            "0",
            "--quic-port",
            "0",
            "--workers",
            "1",
        ]
        server = ServeProcess([*base, *args], clean_environment(**env))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
    HeartbeatTable.unlink(segment_name(tmp_path / "data"))
    unlink_rings(str(tmp_path / "data"), MAX_WORKERS)


@pytest.fixture
def darktower() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the `darktower` command to completion; keyword arguments are DARKTOWER_* environment settings."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DARKTOWER, *args],
            capture_output=True,
            text=True,
            env=clean_environment(**env),
            timeout=START_TIMEOUT_S,
            check=False,
        )

    return run
