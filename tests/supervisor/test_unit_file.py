"""The systemd unit asks for what the supervisor provides: notify readiness, the watchdog, reload by SIGHUP,
a drain that fits in the stop timeout, and the data directory `darktower status` is pointed at."""

from __future__ import annotations

import configparser
from pathlib import Path

from darktower.core.config import ServerConfig

UNIT = Path(__file__).parents[2] / "ops" / "systemd" / "darktower.service"


def test_the_unit_uses_the_supervisors_systemd_protocol() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillMode"] == "mixed"
    assert int(service["WatchdogSec"]) > 10, "the supervisor may block up to 10 s reaping a failed child"
    assert int(service["TimeoutStopSec"]) > ServerConfig().drain_timeout_s + 10
    assert service["User"] == "darktower"
    command = service["ExecStart"].split()
    assert command[1] == "serve"
    assert command[command.index("--data-dir") + 1] == f"/var/lib/{service['StateDirectory']}"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
