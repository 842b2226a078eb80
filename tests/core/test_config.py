"""Configuration: defaults, TOML, environment; every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktower.core.config import ConfigError, from_mapping, load


def test_defaults_need_no_file_and_no_environment() -> None:
    config = load(environ={})
    assert config.server.quic_port == 4433
    assert config.tls.certificate == ""


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "darktower.toml"
    file.write_text('[server]\nquic_port = 5000\nhost = "0.0.0.0"\n')
    config = load(file, environ={"DARKTOWER_SERVER__QUIC_PORT": "6000"})
    assert config.server.quic_port == 6000
    assert config.server.host == "0.0.0.0"


def test_the_file_can_be_named_by_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[limits]\nmax_frame_payload_bytes = 4096\n")
    assert load(environ={"DARKTOWER_CONFIG": str(file)}).limits.max_frame_payload_bytes == 4096


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nbogus = 1\n", "server.bogus: unknown key"),
        ("[nope]\nx = 1\n", "nope: unknown key"),
        ('[server]\nquic_port = "x"\n', "server.quic_port: expected `int`, got `str`"),
        ("[server]\nquic_port = 70000\n", r"server.quic_port: 70000 is not a port number"),
        ("[tls]\nself_signed_validity_hours = 400\n", "tls.self_signed_validity_hours: 400 is outside"),
        ('[tls]\ncertificate = "/x.pem"\n', "tls.certificate and tls.private_key must be set together"),
        (
            "[limits]\nmax_signaling_message_bytes = 0\n",
            "limits.max_signaling_message_bytes: must be at least 1",
        ),
        ('[log]\nlevel = "loud"\n', "log.level: invalid enum value 'loud'"),
        ("[server\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_stops_start_up_with_a_message_naming_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(file, environ={})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DARKTOWER_SERVER__QUIC_PORT", "many", "server.quic_port: expected `int`, got `str`"),
        ("DARKTOWER_SERVER__COLOUR", "blue", "server.colour: unknown key"),
        ("DARKTOWER_PORT", "1", "DARKTOWER_PORT: not a config key"),
    ],
)
def test_a_bad_environment_variable_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(environ={name: value})


def test_test_harness_variables_are_not_config_keys() -> None:
    assert load(environ={"DARKTOWER_TEST_REDIS_URL": "redis://x"}).server.http_port == 8080


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.toml", environ={})


def test_the_config_survives_the_trip_to_a_child_process() -> None:
    config = load(environ={"DARKTOWER_LIMITS__MAX_QUEUED_MS": "150"})
    assert from_mapping(config.to_dict()) == config
