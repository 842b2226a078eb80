"""Password hashing with Argon2id (argon2-cffi), off the event loop.

A hash takes tens of milliseconds of CPU and `memory_kib` of memory by design, so it runs in a worker
thread, and at most one hash per CPU runs at once: a burst of sign-ins queues instead of exhausting memory.

`verify` of an account without a password (or of no account) still spends one hash on a dummy, so a
caller cannot tell from the response time whether an address has an account.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

PARALLELISM = 1
"""Lanes per hash: concurrency comes from hashing several passwords at once."""


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int, max_concurrent: int | None = None) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=PARALLELISM, type=argon2.Type.ID
        )
        self._slots = asyncio.Semaphore(max_concurrent or os.cpu_count() or 1)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if `password` matches `stored` (an Argon2 hash); False otherwise, also for None."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            await self._check(self._dummy, password)
            return False
        return await self._check(stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    async def _check(self, stored: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, stored, password)
            except (VerificationError, InvalidHashError):
                return False
