"""`darktower serve` end to end: it starts, serves the API over real HTTP, survives a child's death, refuses
bad configuration before starting anything, and exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from darktower.core.certs import store_for, utcnow
from darktower.core.tokens import TokenVerifier, load_or_create_signing_key

if TYPE_CHECKING:
    from conftest import ServeProcess

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_over_http_and_stops_cleanly(
    serve: Callable[..., ServeProcess], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    server = serve()
    server.wait_ready()
    http, quic = urlsplit(server.http_url), urlsplit(server.quic_url)
    assert (http.scheme, http.hostname, quic.scheme, quic.hostname) == (
        "http",
        "127.0.0.1",
        "https",
        "127.0.0.1",
    )
    assert http.port
    assert quic.port

    with httpx.Client(base_url=server.http_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        created = client.post("/v1/meetings", json={"title": "Sync"})
        assert created.status_code == 201
        meeting_id = created.json()["meeting_id"]
        joined = client.post(f"/v1/meetings/{meeting_id}/join", json={"display_name": "Ada"})
    assert joined.status_code == 200
    body = joined.json()
    assert body["webtransport_url"] == f"{server.quic_url}/meetings/{meeting_id}"

    data = tmp_path / "data"
    verifier = TokenVerifier(load_or_create_signing_key(data / "signing-key.pem").public_key(), "darktower")
    grant = verifier.verify(body["token"], meeting_id=meeting_id, now=time.time())
    assert grant.participant_id == body["participant_id"]
    certificates = store_for(str(data), 240, 72)
    assert [bytes.fromhex(h["value"]) for h in body["certificate_hashes"]] == certificates.hashes(utcnow())
    assert (data / "darktower.sqlite3").is_file()

    assert server.stop(stop_signal) == 0
    assert server.stdout.rest(timeout=5) == []
    server.wait_log(r"^control stopped \(exit code 0\)$", timeout=5)


def test_a_killed_child_is_restarted_on_the_same_port(serve: Callable[..., ServeProcess]) -> None:
    server = serve()
    worker_pid = int(server.wait_log(r"^worker-0 started \(pid (\d+)\)$").group(1))
    control_pid = int(server.wait_log(r"^control started \(pid (\d+)\)$").group(1))
    server.wait_ready()
    with httpx.Client(base_url=server.http_url) as client:
        assert client.post("/v1/meetings", json={"meeting_id": "kept"}).status_code == 201

        os.kill(control_pid, signal.SIGKILL)
        server.wait_log(r"^control exited unexpectedly \(exit code -9\); restarting in")
        restarted = server.wait_log(r"^control restarted on port (\d+)$")
        assert int(restarted.group(1)) == urlsplit(server.http_url).port
        # A restarted child reports ready only once it listens: no polling needed.
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/v1/meetings/kept").status_code == 200

        os.kill(worker_pid, signal.SIGKILL)
        server.wait_log(r"^worker-0 exited unexpectedly \(exit code -9\)")
        restarted = server.wait_log(r"^worker-0 restarted on port (\d+)$")
        assert int(restarted.group(1)) == urlsplit(server.quic_url).port
        assert client.post("/v1/meetings/kept/join", json={"display_name": "Ada"}).status_code == 200
    assert server.stop() == 0


def test_a_port_in_use_stops_start_up_with_status_1(serve: Callable[..., ServeProcess]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = serve("--http-port", str(port))
        assert server.process.wait(server.start_timeout) == 1
    errors = server.stderr.rest(timeout=5)
    assert any(line.startswith("darktower: control cannot start:") for line in errors), errors
    assert any("address already in use" in line.lower() for line in errors), errors
    assert server.stdout.rest(timeout=5) == []


def test_an_unknown_key_in_the_config_file_exits_2_naming_it(tmp_path: Path, darktower: Run) -> None:
    config = tmp_path / "darktower.toml"
    config.write_text("[server]\nhttp_prot = 8080\n")
    result = darktower("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr == "darktower: config error: server.http_prot: unknown key\n"
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


def test_a_bad_environment_value_exits_2_naming_the_key(tmp_path: Path, darktower: Run) -> None:
    result = darktower("serve", "--data-dir", str(tmp_path / "data"), DARKTOWER_SERVER__QUIC_PORT="lots")
    assert result.returncode == 2
    assert result.stderr.startswith("darktower: config error: server.quic_port: ")
    assert not (tmp_path / "data").exists()
