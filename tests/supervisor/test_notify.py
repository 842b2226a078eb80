"""The sd_notify protocol against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from darktower.supervisor.notify import SystemdNotifier


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket at a file path, as `$NOTIFY_SOCKET` names it."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        yield path, listener


def test_each_notification_is_one_datagram_of_assignments(systemd: tuple[str, socket.socket]) -> None:
    address, listener = systemd
    notifier = SystemdNotifier(address, None)
    try:
        assert notifier.ready("2 workers")
        assert listener.recv(4096) == b"READY=1\nSTATUS=2 workers"
        assert notifier.watchdog()
        assert listener.recv(4096) == b"WATCHDOG=1"
        assert notifier.reloading()
        reloading, monotonic = listener.recv(4096).decode().split("\n")
        assert reloading == "RELOADING=1"
        assert monotonic.startswith("MONOTONIC_USEC=")
        assert int(monotonic.removeprefix("MONOTONIC_USEC=")) > 0
        assert notifier.stopping()
        assert listener.recv(4096) == b"STOPPING=1"
    finally:
        notifier.close()


def test_an_abstract_socket_name_is_written_with_an_at_sign() -> None:
    name = f"darktower-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        try:
            assert notifier.ready()
            assert listener.recv(4096) == b"READY=1"
        finally:
            notifier.close()


def test_the_variables_are_taken_out_of_the_environment_and_the_watchdog_runs_at_half_the_interval(
    systemd: tuple[str, socket.socket],
) -> None:
    address, _ = systemd
    environ = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "4000000",
        "WATCHDOG_PID": str(os.getpid()),
        "HOME": "/root",
    }
    notifier = SystemdNotifier.from_environment(environ)
    try:
        assert environ == {"HOME": "/root"}
        assert notifier.enabled
        assert notifier.watchdog_interval_s == 2.0
    finally:
        notifier.close()


@pytest.mark.parametrize(
    "watchdog",
    [{"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}],
)
def test_a_watchdog_meant_for_another_process_or_unusable_is_off(
    systemd: tuple[str, socket.socket], watchdog: dict[str, str]
) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd[0], **watchdog})
    try:
        assert notifier.enabled
        assert notifier.watchdog_interval_s is None
    finally:
        notifier.close()


def test_without_systemd_nothing_is_sent() -> None:
    notifier = SystemdNotifier.from_environment({"WATCHDOG_USEC": "4000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready() is False


def test_an_unreachable_socket_is_logged_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"), None)
    try:
        assert notifier.stopping() is False
    finally:
        notifier.close()
    assert "cannot notify systemd" in caplog.text
