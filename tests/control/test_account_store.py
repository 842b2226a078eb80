"""The `AccountStore` contract, against every implementation: users, identities, refresh-token families and
the audit log, including the races that must have exactly one winner."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from darktower.control.accounts import (
    AccountStore,
    AuditAction,
    AuditEvent,
    AuditOutcome,
    RefreshOutcome,
    Rotation,
    User,
    UserExistsError,
)
from darktower.control.postgres_store import PostgresMeetingStore
from darktower.control.sqlite_store import SqliteMeetingStore

NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


def user(email: str | None = "ada@example.test", **changes: object) -> User:
    made = User(
        user_id=secrets.token_urlsafe(12),
        email=email,
        display_name="Ada",
        password_hash="$argon2id$stand-in",
        created_at=NOW,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def token() -> str:
    return secrets.token_hex(32)


async def test_a_user_reads_back_by_id_and_by_email(accounts: AccountStore) -> None:
    ada = user()
    await accounts.create_user(ada)
    assert await accounts.user_by_id(ada.user_id) == ada
    assert await accounts.user_by_email("ada@example.test") == ada
    assert await accounts.user_by_id("nobody") is None
    assert await accounts.user_by_email("nobody@example.test") is None


async def test_an_email_address_is_claimed_once_even_when_two_race(accounts: AccountStore) -> None:
    results = await asyncio.gather(*(accounts.create_user(user()) for _ in range(5)), return_exceptions=True)
    assert results.count(None) == 1
    refused = [result for result in results if result is not None]
    assert all(isinstance(result, UserExistsError) for result in refused)
    assert "ada@example.test" in str(refused[0])


async def test_many_users_may_have_no_email_address(accounts: AccountStore) -> None:
    first, second = user(None, password_hash=None), user(None, password_hash=None)
    await accounts.create_user(first)
    await accounts.create_user(second)
    assert await accounts.user_by_id(second.user_id) == second


async def test_a_password_hash_is_replaced(accounts: AccountStore) -> None:
    ada = user()
    await accounts.create_user(ada)
    await accounts.set_password_hash(ada.user_id, "$argon2id$stronger")
    assert await accounts.user_by_id(ada.user_id) == replace(ada, password_hash="$argon2id$stronger")


async def test_an_identity_links_one_user_however_often_and_however_concurrently_it_signs_in(
    accounts: AccountStore,
) -> None:
    assert await accounts.user_for_identity("https://idp.example", "sub-1") is None
    linked = await asyncio.gather(
        *(
            accounts.link_identity(
                "https://idp.example", "sub-1", user("ada@idp.example", password_hash=None)
            )
            for _ in range(5)
        )
    )
    assert len({each.user_id for each in linked}) == 1
    assert linked[0].email == "ada@idp.example"
    assert await accounts.user_for_identity("https://idp.example", "sub-1") == linked[0]
    again = await accounts.link_identity("https://idp.example", "sub-1", user("other@idp.example"))
    assert again == linked[0]


async def test_the_same_subject_at_another_issuer_is_another_user(accounts: AccountStore) -> None:
    first = await accounts.link_identity("https://a.example", "sub", user(None))
    second = await accounts.link_identity("https://b.example", "sub", user(None))
    assert first.user_id != second.user_id


async def test_an_identity_never_takes_over_an_account_by_email_address(accounts: AccountStore) -> None:
    ada = user()
    await accounts.create_user(ada)
    linked = await accounts.link_identity("https://idp.example", "sub-1", user("ada@example.test"))
    assert linked.user_id != ada.user_id
    assert linked.email is None
    assert await accounts.user_by_email("ada@example.test") == ada


async def family(accounts: AccountStore, user_id: str = "u1") -> tuple[str, str]:
    family_id, first = secrets.token_urlsafe(16), token()
    await accounts.start_refresh_family(
        family_id=family_id, user_id=user_id, token_hash=first, now=NOW, expires_at=LATER
    )
    return family_id, first


async def rotate(accounts: AccountStore, old: str, new: str, now: datetime = NOW) -> Rotation:
    return await accounts.rotate_refresh_token(old, new_token_hash=new, now=now, expires_at=LATER)


async def test_a_live_token_rotates_once_and_its_successor_is_live(accounts: AccountStore) -> None:
    family_id, first = await family(accounts)
    second, third = token(), token()
    assert await rotate(accounts, first, second) == Rotation(RefreshOutcome.ROTATED, "u1", family_id)
    assert await rotate(accounts, second, third) == Rotation(RefreshOutcome.ROTATED, "u1", family_id)


async def test_a_spent_token_revokes_its_whole_family(accounts: AccountStore) -> None:
    family_id, first = await family(accounts)
    second = token()
    await rotate(accounts, first, second)
    assert await rotate(accounts, first, token()) == Rotation(RefreshOutcome.REUSED, "u1", family_id)
    assert await rotate(accounts, second, token()) == Rotation(RefreshOutcome.REVOKED, "u1", family_id)


async def test_a_token_raced_by_two_refreshes_rotates_once_and_the_other_is_a_reuse(
    accounts: AccountStore,
) -> None:
    _, first = await family(accounts)
    results = await asyncio.gather(*(rotate(accounts, first, token()) for _ in range(4)))
    outcomes = sorted(result.outcome for result in results)
    assert outcomes.count(RefreshOutcome.ROTATED) == 1
    assert outcomes.count(RefreshOutcome.REUSED) == 3


async def test_an_expired_token_does_not_rotate(accounts: AccountStore) -> None:
    family_id, first = await family(accounts)
    outcome = await rotate(accounts, first, token(), now=LATER)
    assert outcome == Rotation(RefreshOutcome.EXPIRED, "u1", family_id)


async def test_an_unknown_token_is_unknown(accounts: AccountStore) -> None:
    assert await rotate(accounts, token(), token()) == Rotation(RefreshOutcome.UNKNOWN, None, None)
    revoked = await accounts.revoke_refresh_family(token(), now=NOW, reason="logout")
    assert revoked == Rotation(RefreshOutcome.UNKNOWN, None, None)


async def test_revoking_a_family_ends_every_token_of_it_and_no_other(accounts: AccountStore) -> None:
    family_id, first = await family(accounts)
    _, other = await family(accounts, "u2")
    second = token()
    await rotate(accounts, first, second)
    revoked = await accounts.revoke_refresh_family(first, now=NOW, reason="logout")
    assert revoked == Rotation(RefreshOutcome.REVOKED, "u1", family_id)
    assert (await rotate(accounts, second, token())).outcome is RefreshOutcome.REVOKED
    assert (await rotate(accounts, other, token())).outcome is RefreshOutcome.ROTATED


def event(number: int) -> AuditEvent:
    return AuditEvent(
        at=NOW + timedelta(seconds=number),
        action=AuditAction.LOGIN,
        outcome=AuditOutcome.FAILURE if number % 2 else AuditOutcome.SUCCESS,
        user_id=None if number % 2 else f"u{number}",
        ip="192.0.2.7" if number % 3 else None,
        detail=f"attempt {number}",
    )


async def test_the_audit_log_reads_back_in_order_and_only_the_last_events(accounts: AccountStore) -> None:
    events = [event(number) for number in range(6)]
    for each in events:
        await accounts.append_audit(each)
    assert await accounts.audit_log() == events
    assert await accounts.audit_log(limit=2) == events[-2:]
    assert await accounts.audit_log(limit=0) == []


async def test_the_sqlite_audit_log_refuses_changes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await SqliteMeetingStore.open(path)
    try:
        await store.accounts.append_audit(event(0))
    finally:
        await store.close()
    async with aiosqlite.connect(path) as raw:
        for statement in ("UPDATE audit_log SET detail = 'forged'", "DELETE FROM audit_log"):
            with pytest.raises(aiosqlite.IntegrityError, match="append-only"):
                await raw.execute(statement)


async def test_the_postgres_audit_log_refuses_changes(postgres_dsn: str) -> None:
    store = await PostgresMeetingStore.open(postgres_dsn)
    try:
        await store.accounts.append_audit(event(0))
    finally:
        await store.close()
    raw = await asyncpg.connect(postgres_dsn)
    try:
        for statement in (
            "UPDATE audit_log SET detail = 'forged'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await raw.execute(statement)
    finally:
        await raw.close()
