"""The store implementations a process uses, chosen by the `[store]` configuration section.

Durable: SQLite in `server.data_dir` (default) or PostgreSQL; opening one applies its missing migrations.
Ephemeral: in the process (default) or Redis; a Redis store connects on first use, so a Redis that is down
does not stop a process from starting.
"""

from __future__ import annotations

from darktower.control.ephemeral import EphemeralStore
from darktower.control.memory_ephemeral import InMemoryEphemeralStore
from darktower.control.migrations import MigrationReport
from darktower.control.postgres_store import PostgresMeetingStore, describe_dsn
from darktower.control.redis_ephemeral import RedisEphemeralStore
from darktower.control.sqlite_store import SqliteMeetingStore, database_path
from darktower.core.config import Config


async def open_durable_store(config: Config) -> SqliteMeetingStore | PostgresMeetingStore:
    """The configured durable store, its schema up to date; StoreError when it cannot be opened."""
    store = config.store
    if store.durable == "postgres":
        return await PostgresMeetingStore.open(
            store.postgres_dsn, pool_size=store.postgres_pool_size, connect_timeout_s=store.connect_timeout_s
        )
    return await SqliteMeetingStore.open(database_path(config.server.data_dir))


def durable_location(config: Config) -> str:
    """The configured durable store, for people (no password)."""
    if config.store.durable == "postgres":
        return describe_dsn(config.store.postgres_dsn)
    return str(database_path(config.server.data_dir))


async def migrate(config: Config) -> MigrationReport:
    """Applies the configured durable store's missing migrations (what start-up does) and reports them."""
    store = await open_durable_store(config)
    await store.close()
    return store.migration


def open_ephemeral_store(config: Config) -> EphemeralStore:
    store = config.store
    if store.ephemeral == "redis":
        return RedisEphemeralStore.from_url(
            store.redis_url, prefix=store.redis_key_prefix, timeout_s=store.connect_timeout_s
        )
    return InMemoryEphemeralStore()
