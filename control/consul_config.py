"""Configuration every control plane of a deployment shares, kept in Consul KV.

The KV entry `<discovery.kv_prefix>config` holds a JSON object laid over the local configuration when a
control plane starts with `discovery.mode = "consul"`, so rate limits and the admin list are changed in one
place for every node. Only what must agree across nodes may be set there (`SHAREABLE`): the `rate_limits`
section and `auth.admins`; anything else is refused with an error naming the KV entry and the key, as is a
value the local configuration would refuse. Consul unreachable at start-up: the local configuration is used
and the control plane says so in its log (it is the configuration a node would have without Consul).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from darktower.control.consul_discovery import SharedConfig
from darktower.control.discovery import DiscoveryUnavailableError
from darktower.core.config import Config, ConfigError, from_mapping

log = logging.getLogger(__name__)

KEY: Final = "config"
SHAREABLE: Final[dict[str, frozenset[str] | None]] = {"rate_limits": None, "auth": frozenset({"admins"})}
"""Section -> the keys that may be shared (None: all of them)."""


async def with_shared_config(config: Config, shared: SharedConfig) -> Config:
    """`config` with the shared entry laid over it; ConfigError when the entry is not acceptable."""
    where = f"Consul KV {config.discovery.kv_prefix}{KEY}"
    try:
        raw = await shared.get(KEY)
    except DiscoveryUnavailableError as exc:
        log.warning("%s not read, using the local configuration: %s", where, exc)
        return config
    if raw is None:
        return config
    return overlay(config, raw, where)


def overlay(config: Config, raw: bytes, where: str) -> Config:
    """`config` with the JSON document `raw` (from `where`) laid over it."""
    try:
        document: Any = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: must be a JSON object of config sections")
    data = config.to_dict()
    for section, values in document.items():
        if section not in SHAREABLE:
            raise ConfigError(f"{where}: {section}: not shareable (only {', '.join(sorted(SHAREABLE))})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: {section}: must be an object")
        allowed = SHAREABLE[section]
        for key in values:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"{where}: {section}.{key}: not shareable")
        data[section].update(values)
    try:
        return from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
