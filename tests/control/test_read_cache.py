"""The meeting read cache: an answer read before an outage is served (marked stale) while the durable store
is down, a change to the meeting invalidates it, and joins (the hot path) do not. The real-server outage
and recovery is in test_store_outage.py; here the store's unavailability is switched in process."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from darktower.control.read_cache import STALE_HEADER
from darktower.control.store import InMemoryMeetingStore, Meeting, StoreUnavailableError

PASSWORD = "correct horse battery"
STALE = STALE_HEADER[0].decode()


class SwitchableStore(InMemoryMeetingStore):
    """Meetings whose reads fail as PostgreSQL's do while `down`."""

    down = False

    async def get(self, meeting_id: str) -> Meeting | None:
        if self.down:
            raise StoreUnavailableError("PostgreSQL is unavailable: connection refused")
        return await super().get(meeting_id)


async def test_changes_invalidate_the_cached_meeting_and_joins_do_not(
    make_app: Callable[..., FastAPI], connect: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    store = SwitchableStore()
    async with connect(make_app(store)) as client:
        account = {"email": "host@example.test", "password": PASSWORD}
        assert (await client.post("/v1/users", json=account)).status_code == 201
        token = (await client.post("/v1/auth/login", json=account)).json()["access_token"]
        host = {"Authorization": f"Bearer {token}"}
        created = await client.post("/v1/meetings", json={"meeting_id": "m1", "title": "Old"}, headers=host)
        assert created.status_code == 201
        assert (await client.get("/v1/meetings/m1")).json()["title"] == "Old"

        changed = await client.patch("/v1/meetings/m1", json={"title": "New"}, headers=host)
        assert changed.status_code == 200, changed.text
        store.down = True
        refused = await client.get("/v1/meetings/m1")
        assert refused.status_code == 503, "the old answer was invalidated by the change"
        assert refused.json()["error"]["code"] == "store_unavailable"

        store.down = False
        fresh = await client.get("/v1/meetings/m1")
        assert fresh.json()["title"] == "New"
        assert STALE not in fresh.headers
        joined = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
        assert joined.status_code == 200, joined.text
        store.down = True
        cached = await client.get("/v1/meetings/m1")
        assert cached.status_code == 200, "a join left the cached answer in place"
        assert cached.json() == fresh.json()
        assert cached.headers[STALE] == STALE_HEADER[1].decode()
        assert (await client.get("/v1/meetings/never-read")).status_code == 503
