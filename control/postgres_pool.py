"""Queries on an asyncpg pool, with a server that cannot be reached reported as `StoreUnavailableError`.

Shared by the PostgreSQL stores (meetings, accounts) that use one pool. Every statement is parameterized:
values travel as `$n` arguments, never inside the SQL text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final, TypeVar, cast

import asyncpg

from darktower.control.store import StoreUnavailableError

_T = TypeVar("_T")

UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.TooManyConnectionsError,
)
"""What a server that is down, shutting down, restarting or refusing connections raises: SQLSTATE class 08
(connection exceptions: also a pooled connection the server closed mid-query), 57P01..57P03, 53300, and
asyncpg's own errors for a lost connection (InternalClientError when the server ends a pooled connection just
as a query starts on it)."""


def reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class PostgresQueries:
    """One pool's statements; each runs on a connection of its own (autocommit)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def execute(self, query: str, *args: object) -> str:
        """The command status, e.g. `INSERT 0 1`."""
        return cast("str", await _available(self.pool.execute(query, *args)))

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return cast("list[asyncpg.Record]", await _available(self.pool.fetch(query, *args)))

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        return cast("asyncpg.Record | None", await _available(self.pool.fetchrow(query, *args)))

    async def fetchval(self, query: str, *args: object) -> Any:
        return await _available(self.pool.fetchval(query, *args))


async def _available(operation: Awaitable[_T]) -> _T:
    try:
        return await operation
    except UNAVAILABLE as exc:
        raise StoreUnavailableError(f"PostgreSQL is unavailable: {reason(exc)}") from None
