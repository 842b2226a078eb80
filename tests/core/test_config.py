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
        ('[store]\ndurable = "mysql"\n', "store.durable: invalid enum value 'mysql'"),
        ('[store]\nephemeral = "memcached"\n', "store.ephemeral: invalid enum value 'memcached'"),
        ('[store]\ndurable = "postgres"\n', 'store.postgres_dsn: required when store.durable = "postgres"'),
        ('[store]\nephemeral = "redis"\n', 'store.redis_url: required when store.ephemeral = "redis"'),
        (
            '[store]\npostgres_dsn = "postgresql://db/x"\n',
            'store.postgres_dsn: set, but store.durable is not "postgres"',
        ),
        ('[store]\nredis_url = "redis://r"\n', 'store.redis_url: set, but store.ephemeral is not "redis"'),
        (
            '[store]\ndurable = "postgres"\npostgres_dsn = "mysql://u:secret@db/x"\n',
            "store.postgres_dsn: must start with postgres:// or postgresql://$",
        ),
        (
            '[store]\nephemeral = "redis"\nredis_url = "http://r"\n',
            "store.redis_url: must start with redis:// or rediss:// or unix://",
        ),
        ("[store]\npostgres_pool_size = 0\n", "store.postgres_pool_size: 0 is outside 1..1000"),
        ("[store]\nconnect_timeout_s = 0\n", r"store.connect_timeout_s: 0.0 is outside \(0, 300\]"),
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


def test_the_stores_default_to_the_embedded_ones() -> None:
    store = load(environ={}).store
    assert (store.durable, store.ephemeral) == ("sqlite", "memory")


def test_postgres_and_redis_are_chosen_with_their_addresses() -> None:
    store = load(
        environ={
            "DARKTOWER_STORE__DURABLE": "postgres",
            "DARKTOWER_STORE__POSTGRES_DSN": "postgresql://dt:pw@db:5432/dt",
            "DARKTOWER_STORE__EPHEMERAL": "redis",
            "DARKTOWER_STORE__REDIS_URL": "rediss://cache:6380/1",
            "DARKTOWER_STORE__CONNECT_TIMEOUT_S": "2.5",
        }
    ).store
    assert store.postgres_dsn == "postgresql://dt:pw@db:5432/dt"
    assert store.redis_url == "rediss://cache:6380/1"
    assert store.connect_timeout_s == 2.5


def test_test_harness_variables_are_not_config_keys() -> None:
    assert load(environ={"DARKTOWER_TEST_REDIS_URL": "redis://x"}).server.http_port == 8080


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.toml", environ={})


def test_the_config_survives_the_trip_to_a_child_process() -> None:
    config = load(environ={"DARKTOWER_LIMITS__MAX_QUEUED_MS": "150"})
    assert from_mapping(config.to_dict()) == config


def test_accounts_and_sign_in_have_safe_defaults() -> None:
    config = load(environ={})
    assert config.auth.access_token_ttl_s == 900
    assert config.auth.open_registration is True
    assert config.auth.password_hash_memory_kib == 65536
    assert config.oidc.enabled is False
    assert config.rate_limits.when_unavailable == "allow"


def test_sign_in_settings_come_from_the_environment() -> None:
    config = load(
        environ={
            "DARKTOWER_AUTH__OPEN_REGISTRATION": "false",
            "DARKTOWER_AUTH__ACCESS_TOKEN_TTL_S": "300",
            "DARKTOWER_OIDC__ISSUER": "https://idp.example/realms/dt",
            "DARKTOWER_OIDC__CLIENT_ID": "darktower",
            "DARKTOWER_OIDC__REDIRECT_URI": "https://dt.example/v1/auth/oidc/callback",
            "DARKTOWER_RATE_LIMITS__LOGIN_PER_MINUTE": "2.5",
            "DARKTOWER_RATE_LIMITS__WHEN_UNAVAILABLE": "refuse",
        }
    )
    assert config.auth.open_registration is False
    assert config.auth.access_token_ttl_s == 300
    assert config.oidc.enabled is True
    assert config.rate_limits.login_per_minute == 2.5
    assert config.rate_limits.when_unavailable == "refuse"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[auth]\naccess_token_ttl_s = 3600\n", r"auth.access_token_ttl_s: 3600 is outside 30..900"),
        ("[auth]\nrefresh_token_ttl_s = 10\n", "auth.refresh_token_ttl_s: 10 is outside"),
        ("[auth]\npassword_hash_memory_kib = 4\n", "auth.password_hash_memory_kib: 4 is outside 8..4194304"),
        ("[auth]\npassword_hash_time_cost = 0\n", "auth.password_hash_time_cost: 0 is outside 1..20"),
        ('[oidc]\nissuer = "http://idp.example"\n', "oidc.issuer: must be an https URL"),
        ('[oidc]\nissuer = "https://idp.example"\n', "oidc.client_id: required when oidc.issuer is set"),
        (
            '[oidc]\nissuer = "https://idp.example"\nclient_id = "c"\n',
            "oidc.redirect_uri: required when oidc.issuer is set",
        ),
        (
            (
                '[oidc]\nissuer = "http://127.0.0.1:8080"\nclient_id = "c"\nredirect_uri = "https://x/cb"\n'
                'scopes = "email"\n'
            ),
            "oidc.scopes: must include openid",
        ),
        ("[rate_limits]\nlogin_burst = 0\n", "rate_limits.login_burst: 0 is outside 1..1000000"),
        (
            "[rate_limits]\njoin_per_minute = -1.0\n",
            r"rate_limits.join_per_minute: -1.0 is outside \(0, 1000000\]",
        ),
        (
            '[rate_limits]\nwhen_unavailable = "maybe"\n',
            "rate_limits.when_unavailable: invalid enum value 'maybe'",
        ),
    ],
)
def test_bad_sign_in_settings_name_their_key(tmp_path: Path, toml: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(file, environ={})


def test_the_process_model_defaults_to_one_worker_with_a_3_s_heartbeat_and_a_30_s_drain() -> None:
    server = load(environ={}).server
    assert (server.workers, server.heartbeat_timeout_s, server.drain_timeout_s) == (1, 3.0, 30.0)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nworkers = 257\n", r"server.workers: 257 is outside 0..256 \(0: one per usable core\)"),
        (
            "[server]\nquic_port = 65535\nworkers = 2\n",
            r"server.workers: 2 workers need UDP ports 65535..65536",
        ),
        ("[server]\nheartbeat_timeout_s = 0.5\n", r"server.heartbeat_timeout_s: 0.5 is outside 1..600"),
        ("[server]\nheartbeat_timeout_s = nan\n", r"server.heartbeat_timeout_s: nan is outside 1..600"),
        ("[server]\ndrain_timeout_s = -1.0\n", r"server.drain_timeout_s: -1.0 is outside 0..3600"),
    ],
)
def test_bad_process_model_settings_name_their_key(tmp_path: Path, toml: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(file, environ={})
