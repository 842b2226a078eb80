"""The `darktower` command line in process: configuration checks, flag precedence, dispatch, exit codes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from darktower.supervisor.cli import main


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DARKTOWER_* setting leaks in; the root logger `serve` configures is restored afterwards."""
    for name in os.environ:
        if name.startswith("DARKTOWER_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_config_check_prints_the_effective_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "darktower.toml"
    file.write_text('[server]\nquic_port = 5000\npublic_host = "media.example"\n')
    monkeypatch.setenv("DARKTOWER_AUTH__JOIN_TOKEN_TTL_S", "60")
    assert main(["config", "check", "--config", str(file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["server"]["quic_port"] == 5000
    assert printed["server"]["public_host"] == "media.example"
    assert printed["auth"]["join_token_ttl_s"] == 60
    assert set(printed) == {
        "server",
        "tls",
        "auth",
        "limits",
        "store",
        "oidc",
        "rate_limits",
        "log",
        "discovery",
    }


def test_config_check_shows_no_password_or_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "DARKTOWER_STORE__DURABLE": "postgres",
        "DARKTOWER_STORE__POSTGRES_DSN": "postgresql://dt:hunter2@db.example:5432/dt?sslmode=require",
        "DARKTOWER_STORE__EPHEMERAL": "redis",
        "DARKTOWER_STORE__REDIS_URL": "rediss://cache:pa/ss@w0rd@cache.example:6380/1",
        "DARKTOWER_OIDC__ISSUER": "https://idp.example",
        "DARKTOWER_OIDC__CLIENT_ID": "darktower",
        "DARKTOWER_OIDC__CLIENT_SECRET": "oidc-secret",
        "DARKTOWER_OIDC__REDIRECT_URI": "https://dt.example/v1/auth/oidc/callback",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check"]) == 0
    output = capsys.readouterr().out
    for secret in ("hunter2", "pa/ss", "w0rd", "oidc-secret"):
        assert secret not in output
    printed = json.loads(output)
    assert printed["store"]["postgres_dsn"] == "postgresql://dt:***@db.example:5432/dt?sslmode=require"
    assert printed["store"]["redis_url"] == "rediss://cache:***@cache.example:6380/1"
    assert printed["oidc"]["client_secret"] == "***"
    assert printed["oidc"]["client_id"] == "darktower"


def test_config_check_redacts_a_password_given_as_a_parameter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DARKTOWER_STORE__EPHEMERAL", "redis")
    monkeypatch.setenv("DARKTOWER_STORE__REDIS_URL", "unix:///run/redis.sock?db=0&password=hunter2")
    assert main(["config", "check"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["store"]["redis_url"] == "unix:///run/redis.sock?db=0&password=***"
    assert printed["oidc"]["client_secret"] == ""


@pytest.mark.parametrize(
    ("argv", "toml", "env", "message"),
    [
        (
            ["config", "check"],
            "[limits]\nmax_queued_ms = 0\n",
            {},
            "limits.max_queued_ms: must be at least 1",
        ),
        (["config", "check"], "[lgo]\nlevel = 'debug'\n", {}, "lgo: unknown key"),
        (["config", "check"], "", {"DARKTOWER_LOG__LEVEL": "loud"}, "log.level: invalid enum value 'loud'"),
        (["config", "check"], "", {"DARKTOWER_NOSECTION": "1"}, "DARKTOWER_NOSECTION: not a config key"),
        (["serve", "--http-port", "70000"], "", {}, "server.http_port: 70000 is not a port number"),
        (["serve", "--host", ""], "", {}, "server.host: must not be empty"),
        (
            ["serve"],
            "[server]\nweb_root = '/nonexistent/web'\n",
            {},
            "server.web_root: /nonexistent/web is not a",
        ),
    ],
)
def test_a_config_error_exits_2_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    toml: str,
    env: dict[str, str],
    message: str,
) -> None:
    file = tmp_path / "darktower.toml"
    file.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([*argv, "--config", str(file)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"darktower: config error: {message}"), captured.err
    assert captured.out == ""


def test_flags_override_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config check` takes no server flags, so precedence is observed through a flag-validated error."""
    file = tmp_path / "darktower.toml"
    file.write_text("[server]\nhttp_port = 1\n")
    monkeypatch.setenv("DARKTOWER_SERVER__HTTP_PORT", "2")
    assert main(["serve", "--config", str(file), "--http-port", "-3"]) == 2
    assert "server.http_port: -3 is not a port number" in capsys.readouterr().err


def test_an_unusable_signing_key_exits_1_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    monkeypatch.setenv("DARKTOWER_AUTH__SIGNING_KEY", str(key))
    assert main(["serve", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert f"darktower: cannot use the join-token signing key {key}:" in err


@pytest.mark.parametrize("argv", [[], ["serve", "--bogus"], ["config"], ["nonsense"]])
def test_a_bad_command_line_exits_2_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: darktower" in capsys.readouterr().err


def test_bot_dispatches_its_arguments_to_the_bot(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bot", "--help"])
    assert exited.value.code == 0
    assert "usage: darktower bot" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["bot", "--server", "http://127.0.0.1:1"])
    assert exited.value.code == 2
    assert "--meeting" in capsys.readouterr().err
