"""The one typed configuration object: defaults, then a TOML file, then `DARKTOWER_*` environment variables.

Every process (supervisor, workers, control plane) receives the same validated `Config`. Anything wrong (an
unknown key, a value of the wrong type or out of range) raises `ConfigError` whose message names the key,
before any socket is opened.

Environment variables name a key as `DARKTOWER_<SECTION>__<KEY>` (double underscore between section and key),
for example `DARKTOWER_SERVER__QUIC_PORT=4433`. `DARKTOWER_CONFIG` names the TOML file. Variables starting
with `DARKTOWER_TEST_` belong to the test harness and are ignored here.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from darktower.core.errors import DarkTowerError

ENV_PREFIX = "DARKTOWER_"
ENV_CONFIG_FILE = "DARKTOWER_CONFIG"
_ENV_IGNORED_PREFIXES = ("DARKTOWER_TEST_",)


class ConfigError(DarkTowerError):
    """The configuration is invalid; the message names the offending key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    def check(self, section: str) -> None:
        """Cross-field and range checks; raises ConfigError naming `section.key`."""


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "darktower")


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    """Address the HTTP API and the QUIC workers bind to."""
    public_host: str = ""
    """Host name or address written into URLs handed to clients; empty means `host`."""
    http_port: int = 8080
    """Control plane HTTP port (0 picks a free one): plain HTTP/1.1, what the embedded default and a local
    browser use."""
    https: bool = False
    """Also serve the control plane over TLS with the workers' certificate: HTTP/1.1 and HTTP/2 (ALPN) on
    TCP `https_port` and HTTP/3 on UDP `https_port`."""
    https_port: int = 8443
    """TCP and UDP port of `https` (0 picks a free one; the UDP socket takes the same number)."""
    quic_port: int = 4433
    """WebTransport (QUIC/UDP) port (0 picks a free one)."""
    workers: int = 1
    """QUIC worker processes, 1..256 (one index byte names a worker in its connection IDs), or 0 for one per
    usable core; `serve` also refuses more than 4 per usable core."""
    steering: Literal["auto", "reuseport-cbpf", "port-per-worker"] = "auto"
    """How datagrams find their worker: every worker on `quic_port` behind a reuseport CBPF program that
    reads the QUIC connection ID, or worker k alone on `quic_port + k` with the control plane naming the
    meeting owner's port at join. `auto` takes the first where the kernel allows it, the second otherwise."""
    heartbeat_timeout_s: float = 3.0
    """A worker whose heartbeat is older than this is killed and replaced (it beats every 0.25 s)."""
    drain_timeout_s: float = 30.0
    """On SIGTERM a worker serves its open sessions for at most this long before closing them."""
    data_dir: str = msgspec.field(default_factory=_default_data_dir)
    """Where the SQLite database, the token signing key and self-signed certificates live."""
    web_root: str = ""
    """Directory of the built browser app served at `/`; empty means the packaged build, if any."""

    def check(self, section: str) -> None:
        for key in ("http_port", "quic_port", "https_port"):
            port = getattr(self, key)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{section}.{key}: {port} is not a port number (0..65535)")
        if not 0 <= self.workers <= 256:
            raise ConfigError(f"{section}.workers: {self.workers} is outside 0..256 (0: one per usable core)")
        if self.quic_port and self.quic_port + self.workers - 1 > 65535:
            raise ConfigError(
                f"{section}.workers: {self.workers} workers need UDP ports {self.quic_port}.."
                f"{self.quic_port + self.workers - 1} (quic_port + worker index), which do not all exist"
            )
        if not (math.isfinite(self.heartbeat_timeout_s) and 1.0 <= self.heartbeat_timeout_s <= 600):
            raise ConfigError(
                f"{section}.heartbeat_timeout_s: {self.heartbeat_timeout_s} is outside 1..600 "
                "(workers beat every 0.25 s)"
            )
        if not (math.isfinite(self.drain_timeout_s) and 0 <= self.drain_timeout_s <= 3600):
            raise ConfigError(f"{section}.drain_timeout_s: {self.drain_timeout_s} is outside 0..3600")
        if not self.host:
            raise ConfigError(f"{section}.host: must not be empty")

    @property
    def advertised_host(self) -> str:
        return self.public_host or self.host


class TlsConfig(_Section, frozen=True):
    certificate: str = ""
    """PEM certificate chain for QUIC; empty means self-signed mode."""
    private_key: str = ""
    """PEM private key matching `certificate`."""
    self_signed_validity_hours: int = 240
    """Lifetime of a self-signed certificate; browsers accept at most 14 days (336 h) for certificate hashes."""
    rotate_before_expiry_hours: int = 72
    """A new self-signed certificate is made this long before the current one expires."""

    def check(self, section: str) -> None:
        if bool(self.certificate) != bool(self.private_key):
            raise ConfigError(f"{section}.certificate and {section}.private_key must be set together")
        if not 1 <= self.self_signed_validity_hours < 14 * 24:
            raise ConfigError(
                f"{section}.self_signed_validity_hours: {self.self_signed_validity_hours} is outside 1..335 "
                "(browsers refuse certificate hashes for certificates valid 14 days or more)"
            )
        if not 0 < self.rotate_before_expiry_hours < self.self_signed_validity_hours:
            raise ConfigError(
                f"{section}.rotate_before_expiry_hours: must be above 0 and below self_signed_validity_hours"
            )


class AuthConfig(_Section, frozen=True):
    signing_key: str = ""
    """PEM EC P-256 private key that signs join tokens and API access tokens; empty means one generated in
    `server.data_dir`."""
    join_token_ttl_s: int = 120
    """Lifetime of a join token: it only has to last until the WebTransport session is open."""
    issuer: str = "darktower"
    access_token_ttl_s: int = 900
    """Lifetime of an API access token (at most 15 minutes: it cannot be revoked before it expires)."""
    refresh_token_ttl_s: int = 30 * 24 * 3600
    """How long a refresh token stays usable; each refresh hands out a new one with a fresh lifetime."""
    open_registration: bool = True
    """Anyone may create an account with `POST /v1/users`; false leaves only OIDC sign-in (and accounts that
    exist)."""
    password_hash_time_cost: int = 3
    """Argon2id passes over memory per password hash."""
    password_hash_memory_kib: int = 65536
    """Argon2id memory per password hash, in KiB."""
    admins: tuple[str, ...] = ()
    """Accounts allowed to use the admin API (`/v1/admin/...`), each named by its user id or its email
    (compared case-insensitively). Empty: nobody."""

    def check(self, section: str) -> None:
        if not 5 <= self.join_token_ttl_s <= 3600:
            raise ConfigError(f"{section}.join_token_ttl_s: {self.join_token_ttl_s} is outside 5..3600")
        if not 30 <= self.access_token_ttl_s <= 900:
            raise ConfigError(f"{section}.access_token_ttl_s: {self.access_token_ttl_s} is outside 30..900")
        if not 300 <= self.refresh_token_ttl_s <= 365 * 24 * 3600:
            raise ConfigError(
                f"{section}.refresh_token_ttl_s: {self.refresh_token_ttl_s} is outside 300..31536000 (1 year)"
            )
        if not 1 <= self.password_hash_time_cost <= 20:
            raise ConfigError(
                f"{section}.password_hash_time_cost: {self.password_hash_time_cost} is outside 1..20"
            )
        if not 8 <= self.password_hash_memory_kib <= 4 * 1024 * 1024:
            raise ConfigError(
                f"{section}.password_hash_memory_kib: {self.password_hash_memory_kib} is outside 8..4194304"
            )


class OidcConfig(_Section, frozen=True):
    """Sign-in through an OpenID Connect provider (authorization code flow with PKCE); off unless `issuer`
    is set."""

    issuer: str = ""
    """The provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
    https, or http on a loopback address for local testing."""
    client_id: str = ""
    client_secret: str = ""
    """Empty for a public client (PKCE alone); otherwise sent with HTTP Basic authentication."""
    redirect_uri: str = ""
    """This server's `/v1/auth/oidc/callback` URL, exactly as registered at the provider."""
    scopes: str = "openid email profile"
    state_ttl_s: int = 600
    """How long a started sign-in may take to come back to the callback."""
    http_timeout_s: float = 10.0
    """Time limit of each request to the provider."""

    def check(self, section: str) -> None:
        if not self.issuer:
            return
        if not _secure_url(self.issuer):
            raise ConfigError(f"{section}.issuer: must be an https URL (http only on a loopback address)")
        if not self.client_id:
            raise ConfigError(f"{section}.client_id: required when {section}.issuer is set")
        if not self.redirect_uri.startswith(("https://", "http://")):
            raise ConfigError(
                f"{section}.redirect_uri: required when {section}.issuer is set (an http(s) URL)"
            )
        if "openid" not in self.scopes.split():
            raise ConfigError(f"{section}.scopes: must include openid")
        if not 30 <= self.state_ttl_s <= 3600:
            raise ConfigError(f"{section}.state_ttl_s: {self.state_ttl_s} is outside 30..3600")
        if not 0 < self.http_timeout_s <= 120:
            raise ConfigError(f"{section}.http_timeout_s: {self.http_timeout_s} is outside (0, 120]")

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


def _secure_url(url: str) -> bool:
    """https, or http to a loopback host (where nobody can sit between the server and the provider)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme == "https":
        return bool(host)
    return parts.scheme == "http" and host in {"localhost", "127.0.0.1", "::1"}


class RateLimitConfig(_Section, frozen=True):
    """Token buckets in the ephemeral store (shared by every control-plane process using it): a bucket
    holds up to `*_burst` requests and refills at `*_per_minute`."""

    login_burst: int = 10
    """Sign-in and registration attempts per client address."""
    login_per_minute: float = 10.0
    account_login_burst: int = 5
    """Sign-in attempts per account (whatever the address), against password guessing from many hosts."""
    account_login_per_minute: float = 5.0
    join_burst: int = 30
    """Join requests per client address."""
    join_per_minute: float = 60.0
    when_unavailable: Literal["allow", "refuse"] = "allow"
    """What to do while the ephemeral store cannot be reached: let requests through unlimited, or refuse
    them with 503."""

    def check(self, section: str) -> None:
        for name in ("login", "account_login", "join"):
            burst = getattr(self, f"{name}_burst")
            if not 1 <= burst <= 1_000_000:
                raise ConfigError(f"{section}.{name}_burst: {burst} is outside 1..1000000")
            rate = getattr(self, f"{name}_per_minute")
            if not (math.isfinite(rate) and 0 < rate <= 1_000_000):
                raise ConfigError(f"{section}.{name}_per_minute: {rate} is outside (0, 1000000]")


class LimitsConfig(_Section, frozen=True):
    max_frame_payload_bytes: int = 1_000_000
    """Largest media frame payload accepted from a publisher."""
    max_signaling_message_bytes: int = 65_536
    max_participants_per_meeting: int = 100
    max_tracks_per_participant: int = 8
    malformed_input_tolerance: int = 3
    """Malformed messages or frames a session may send before it is closed."""
    max_queued_ms: int = 200
    """Most media a subscriber may have queued in the server before stale groups are dropped."""

    def check(self, section: str) -> None:
        for key in self.__struct_fields__:
            if getattr(self, key) < 1:
                raise ConfigError(f"{section}.{key}: must be at least 1")
        if self.max_frame_payload_bytes > 16 * 1024 * 1024:
            raise ConfigError(f"{section}.max_frame_payload_bytes: over 16 MiB")


class StoreConfig(_Section, frozen=True):
    durable: Literal["sqlite", "postgres"] = "sqlite"
    """Where records that must not be lost live: SQLite in `server.data_dir` (one box) or PostgreSQL."""
    postgres_dsn: str = ""
    """`postgresql://user:password@host:port/database`; required when `durable = "postgres"`."""
    postgres_pool_size: int = 10
    """Connections each control-plane process keeps to PostgreSQL at most."""
    ephemeral: Literal["memory", "redis"] = "memory"
    """Where presence, meeting placement, rate limits and caches live: in the process, or Redis."""
    redis_url: str = ""
    """`redis://[:password@]host:port/db`, `rediss://...` or `unix:///path`; required when `ephemeral = "redis"`."""
    redis_key_prefix: str = "darktower:"
    """Start of every Redis key, so deployments can share one Redis."""
    connect_timeout_s: float = 5.0
    """How long connecting to PostgreSQL or Redis may take before it counts as unavailable."""

    def check(self, section: str) -> None:
        self._check_url(section, "postgres_dsn", "durable", "postgres", ("postgres://", "postgresql://"))
        self._check_url(section, "redis_url", "ephemeral", "redis", ("redis://", "rediss://", "unix://"))
        if not 1 <= self.postgres_pool_size <= 1000:
            raise ConfigError(f"{section}.postgres_pool_size: {self.postgres_pool_size} is outside 1..1000")
        if not 0 < self.connect_timeout_s <= 300:
            raise ConfigError(f"{section}.connect_timeout_s: {self.connect_timeout_s} is outside (0, 300]")

    def _check_url(self, section: str, key: str, kind_key: str, kind: str, schemes: tuple[str, ...]) -> None:
        url: str = getattr(self, key)
        chosen = getattr(self, kind_key) == kind
        if chosen and not url:
            raise ConfigError(f'{section}.{key}: required when {section}.{kind_key} = "{kind}"')
        if url and not chosen:
            raise ConfigError(
                f'{section}.{key}: set, but {section}.{kind_key} is not "{kind}" '
                f'(set {section}.{kind_key} = "{kind}" to use it)'
            )
        if url and not url.startswith(schemes):
            raise ConfigError(f"{section}.{key}: must start with {' or '.join(schemes)}")


class DiscoveryConfig(_Section, frozen=True):
    """How the control plane finds media nodes: `static` (this node only, the embedded default) or `consul`
    (every node registers its QUIC endpoint with its region and load; joins go to the least loaded healthy
    node of the caller's region)."""

    mode: Literal["static", "consul"] = "static"
    region: str = "default"
    """This node's region; joins from callers without a region stay in it."""
    node_name: str = ""
    """This node's name in Consul (its service id is `<service_name>-<node_name>`); empty means the host name."""
    consul_url: str = "http://127.0.0.1:8500"
    """The local Consul agent's HTTP API."""
    consul_token: str = ""
    """ACL token sent to Consul; empty sends none."""
    service_name: str = "darktower-media"
    check_ttl_s: float = 10.0
    """A node whose supervisor has not passed its TTL check for this long is unhealthy (it passes every third
    of it)."""
    deregister_after_s: float = 300.0
    """Consul removes a node whose check has been critical this long."""
    kv_prefix: str = "darktower/"
    """Shared configuration lives under this Consul KV prefix."""
    lock_ttl_s: float = 15.0
    """TTL of the Consul session behind a once-per-region lock; a holder that stops renewing loses it."""
    timeout_s: float = 2.0
    """Time limit of each request to Consul."""

    def check(self, section: str) -> None:
        if not self.region or not self.region.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{section}.region: {self.region!r} must be letters, digits, - and _")
        if self.node_name and not self.node_name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"{section}.node_name: {self.node_name!r} must be letters, digits, -, _ and .")
        if self.mode == "consul" and not self.consul_url.startswith(("http://", "https://")):
            raise ConfigError(f"{section}.consul_url: must be an http:// or https:// URL")
        if not self.service_name:
            raise ConfigError(f"{section}.service_name: must not be empty")
        for key, low, high in (
            ("check_ttl_s", 1.0, 3600.0),
            ("deregister_after_s", 60.0, 86400.0),
            ("lock_ttl_s", 10.0, 86400.0),
            ("timeout_s", 0.1, 60.0),
        ):
            value = getattr(self, key)
            if not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"{section}.{key}: {value} is outside {low:g}..{high:g}")


class LogConfig(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    oidc: OidcConfig = msgspec.field(default_factory=OidcConfig)
    rate_limits: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    discovery: DiscoveryConfig = msgspec.field(default_factory=DiscoveryConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)

    def check(self) -> None:
        for name in self.__struct_fields__:
            section = getattr(self, name)
            assert isinstance(section, _Section)
            section.check(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for handing the config to child processes."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Validates a nested mapping (TOML document or child-process payload) into a `Config`."""
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    config.check()
    return config


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Builds the configuration: defaults < TOML file (`path` or `$DARKTOWER_CONFIG`) < environment."""
    env = os.environ if environ is None else environ
    file = path if path is not None else env.get(ENV_CONFIG_FILE) or None
    data: dict[str, Any] = {}
    if file is not None:
        try:
            with Path(file).open("rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE:
            continue
        if name.startswith(_ENV_IGNORED_PREFIXES):
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or not key:
            raise ConfigError(f"{name}: not a config key (expected DARKTOWER_<SECTION>__<KEY>)")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a table")
        target[key] = value
    return from_mapping(data)


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.server.port``; turn the JSON path into the dotted key people write."""
    message, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        message, where = str(exc), ""
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        return f"{key + '.' if key else ''}{field}: unknown key"
    return f"{key or 'config'}: {message[0].lower()}{message[1:]}"
