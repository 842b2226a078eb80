"""The `darktower` command: `serve`, `status`, `migrate`, `bot`, `config check`.

`config check` prints the effective configuration as JSON with passwords and secrets shown as `***`
(`store.postgres_dsn`, `store.redis_url`, `oidc.client_secret`), so its output can be pasted into a ticket.

Exit status 2 means the command line or the configuration is wrong; the message names the key
(`darktower: config error: server.quic_port: 70000 is not a port number (0..65535)`). `serve` exits 1 when
it cannot start (unusable data directory, a child that fails), 0 after SIGTERM/SIGINT. `migrate` brings the
configured durable store's schema up to date (what `serve` also does when it starts) and exits 1 when the
store cannot be reached or is from a newer server. `status` exits 1 when no server runs on the data
directory. SIGHUP to `serve` replaces its workers one at a time (see `darktower.supervisor.process`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from darktower.control.app import web_root_for
from darktower.core import logging as dt_logging
from darktower.core.config import Config, ConfigError, from_mapping, load
from darktower.core.errors import DarkTowerError

_SERVER_FLAGS = ("host", "http_port", "quic_port", "data_dir", "workers")

REDACTED = "***"
_URLS_WITH_PASSWORDS = (("store", "postgres_dsn"), ("store", "redis_url"))
_SECRETS = (("oidc", "client_secret"),)
_PASSWORD_PARAMETER = re.compile(r"(?i)([?&]password=)[^&#]*")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darktower", description="Dark Tower video conferencing server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the media worker and the control API")
    serve.add_argument("--config", help="TOML file (default: $DARKTOWER_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="address to bind (server.host)")
    serve.add_argument("--http-port", type=int, help="control API TCP port, 0 = any (server.http_port)")
    serve.add_argument("--quic-port", type=int, help="WebTransport UDP port, 0 = any (server.quic_port)")
    serve.add_argument("--data-dir", help="database, keys and certificates (server.data_dir)")
    serve.add_argument(
        "--workers",
        type=int,
        help="QUIC worker processes, 1..256, or 0 for one per usable core (server.workers, default 1)",
    )

    status = commands.add_parser("status", help="show the workers of the server running on a data directory")
    status.add_argument("--config", help="TOML file (default: $DARKTOWER_CONFIG, else built-in defaults)")
    status.add_argument("--data-dir", help="the server's data directory (server.data_dir)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    migrate = commands.add_parser("migrate", help="apply the durable store's missing schema migrations")
    migrate.add_argument("--config", help="TOML file (default: $DARKTOWER_CONFIG, else built-in defaults)")
    migrate.add_argument("--data-dir", help="where the SQLite database lives (server.data_dir)")

    commands.add_parser(
        "bot", add_help=False, help="join a meeting as a synthetic participant (see `darktower bot --help`)"
    )

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_commands.add_parser("check", help="validate and print the effective configuration")
    check.add_argument("--config", help="TOML file (default: $DARKTOWER_CONFIG)")
    return parser


def effective_config(args: argparse.Namespace) -> Config:
    """Defaults < TOML file < DARKTOWER_* environment < command-line flags, validated as a whole."""
    config = load(args.config)
    flags = {key: getattr(args, key) for key in _SERVER_FLAGS if getattr(args, key, None) is not None}
    if flags:
        data: dict[str, Any] = config.to_dict()
        data["server"].update(flags)
        config = from_mapping(data)
    web_root_for(config)
    return config


def redacted(data: dict[str, Any]) -> dict[str, Any]:
    """The configuration `data` as `config check` prints it: the password in each URL that may carry one
    (user-info or a `password=` query parameter) and every secret replaced by `***`."""
    shown = {section: dict(values) for section, values in data.items()}
    for section, key in _URLS_WITH_PASSWORDS:
        shown[section][key] = _redact_url(shown[section][key])
    for section, key in _SECRETS:
        if shown[section][key]:
            shown[section][key] = REDACTED
    return shown


def _redact_url(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if separator:
        # User-info ends at the last `@` before the query: a password typed without percent-encoding may
        # itself hold `/` or `@`.
        at = re.split(r"[?#]", rest, maxsplit=1)[0].rfind("@")
        user, colon, _ = rest[: max(at, 0)].partition(":")
        if colon:
            url = f"{scheme}://{user}:{REDACTED}{rest[at:]}"
    return _PASSWORD_PARAMETER.sub(rf"\g<1>{REDACTED}", url)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "bot":
        from darktower.client.bot import main as bot_main  # noqa: PLC0415 - the server never needs the client

        return bot_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        config = effective_config(args)
    except ConfigError as exc:
        print(f"darktower: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(redacted(config.to_dict()), indent=2))
        return 0
    if args.command in ("migrate", "status"):
        return _migrate(config) if args.command == "migrate" else _status(config, as_json=args.json)
    from darktower.supervisor.serve import serve  # noqa: PLC0415 - loads the server stack only to serve

    dt_logging.setup(config.log.level, config.log.format, "supervisor")
    try:
        serve(config, announce=lambda line: print(line, flush=True))
    except DarkTowerError as exc:
        print(f"darktower: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(config: Config, *, as_json: bool) -> int:
    from darktower.supervisor.status import status  # noqa: PLC0415 - loads the status reader only on use

    return status(config.server.data_dir, as_json=as_json, out=sys.stdout, err=sys.stderr)


def _migrate(config: Config) -> int:
    from darktower.control.backends import durable_location, migrate  # noqa: PLC0415 - loads drivers on use

    where = durable_location(config)
    try:
        report = asyncio.run(migrate(config))
    except DarkTowerError as exc:
        print(f"darktower: {exc}", file=sys.stderr)
        return 1
    if report.applied:
        applied = ", ".join(str(version) for version in report.applied)
        print(
            f"{where}: migrated from schema version {report.previous} to {report.current} (applied {applied})"
        )
    else:
        print(f"{where}: schema version {report.current} is current; nothing to apply")
    return 0
