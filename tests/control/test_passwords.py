"""Argon2id password hashes: they verify only the password they were made from, and tell when they were
made with other parameters."""

from __future__ import annotations

from darktower.control.passwords import PasswordHasher


async def test_a_hash_verifies_its_password_only() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=64)
    stored = await hasher.hash("correct horse")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "correct horse")
    assert not await hasher.verify(stored, "correct horsf")
    assert stored != await hasher.hash("correct horse")


async def test_no_hash_or_a_broken_one_verifies_nothing() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=64)
    assert not await hasher.verify(None, "anything")
    assert not await hasher.verify("$argon2id$garbage", "anything")
    assert not await hasher.verify("plain text", "plain text")


async def test_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    weak, strong = PasswordHasher(time_cost=1, memory_kib=64), PasswordHasher(time_cost=2, memory_kib=128)
    stored = await weak.hash("pw")
    assert not weak.needs_rehash(stored)
    assert strong.needs_rehash(stored)
    assert strong.needs_rehash("not a hash")
