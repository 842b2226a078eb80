"""Consul for the control plane: the media nodes of every region, shared configuration in KV, and locks that
make a job run once per region. Written against Consul's HTTP API through py-consul (synchronous: each call
runs in a thread, with `discovery.timeout_s` as its limit).

Endpoints used, and nothing else (the test stand-in implements exactly these):
`GET /v1/health/service/<service>` (nodes and their checks), `GET`/`PUT /v1/kv/<key>` (with `acquire` /
`release`), `PUT /v1/session/create`, `PUT /v1/session/renew/<id>`, `PUT /v1/session/destroy/<id>`; and
for a node's own registration (`darktower.control.consul_registration`) `PUT /v1/agent/service/register`,
`PUT /v1/agent/check/pass/<check>`, `PUT /v1/agent/check/fail/<check>`, `PUT /v1/agent/service/deregister/<id>`.

A node's service metadata (`NodeMeta`) carries its region, load, QUIC ports and certificate hashes. The
node list is cached for `REFRESH_S`; while Consul cannot be reached, joins are routed from the last list for
up to `STALE_LIMIT_CHECKS` check TTLs, then refused with 503 `discovery_unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import consul
import requests

from darktower.control.discovery import DiscoveryUnavailableError, JoinTarget, MediaNode, target_for
from darktower.core.config import DiscoveryConfig

log = logging.getLogger(__name__)

REFRESH_S: Final = 1.0
"""How long a node list read from Consul is used before it is read again."""
STALE_LIMIT_CHECKS: Final = 3
"""While Consul is unreachable, the last node list is used for this many check TTLs."""
CONSUL_ERRORS: Final = (consul.ConsulException, requests.RequestException, ValueError, KeyError, TypeError)
"""What a py-consul call raises when the agent is down, refuses, or answers nonsense."""


def consul_client(config: DiscoveryConfig) -> consul.Consul:
    """A py-consul client for `discovery.consul_url`, each request limited to `discovery.timeout_s`."""
    scheme, _, rest = config.consul_url.partition("://")
    authority = rest.split("/", 1)[0]
    host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    client = consul.Consul(
        host=host.strip("[]") or authority,
        port=int(port) if port else (443 if scheme == "https" else 8500),
        scheme=scheme,
        token=config.consul_token or None,
    )
    client.http.connections_timeout = config.timeout_s
    return client


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a node publishes in its service metadata (Consul meta values are strings of <= 512 bytes)."""

    region: str
    load: int
    ports: tuple[int, ...]
    certificate_hashes: tuple[bytes, ...]

    def encode(self) -> dict[str, str]:
        return {
            "region": self.region,
            "load": str(self.load),
            "quic_ports": ",".join(str(port) for port in self.ports),
            "cert_sha256": ",".join(digest.hex() for digest in self.certificate_hashes),
        }

    @classmethod
    def decode(cls, meta: Mapping[str, str]) -> NodeMeta:
        """ValueError or KeyError when a field is missing or malformed."""
        ports = tuple(int(port) for port in meta["quic_ports"].split(","))
        if not ports or not all(0 < port < 65536 for port in ports):
            raise ValueError(f"bad quic_ports {meta['quic_ports']!r}")
        hashes = tuple(bytes.fromhex(h) for h in meta.get("cert_sha256", "").split(",") if h)
        if any(len(digest) != 32 for digest in hashes):
            raise ValueError("a cert_sha256 entry is not a SHA-256 digest")
        return cls(region=meta["region"], load=int(meta["load"]), ports=ports, certificate_hashes=hashes)


def nodes_from_health(entries: Sequence[Mapping[str, Any]]) -> list[MediaNode]:
    """The media nodes of a `/v1/health/service/<service>` answer; healthy means every check passes.
    Entries with malformed metadata are left out (and logged): one bad node must not stop routing."""
    nodes = []
    for entry in entries:
        service = entry.get("Service") or {}
        try:
            meta = NodeMeta.decode(service.get("Meta") or {})
            host = service.get("Address") or (entry.get("Node") or {})["Address"]
            name = str(service["ID"])
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("ignoring a media node with malformed Consul metadata: %s", exc)
            continue
        checks = entry.get("Checks") or []
        nodes.append(
            MediaNode(
                name=name,
                region=meta.region,
                host=str(host),
                ports=meta.ports,
                certificate_hashes=meta.certificate_hashes,
                load=float(meta.load),
                healthy=all(check.get("Status") == "passing" for check in checks),
            )
        )
    return nodes


class ConsulDiscovery:
    """Joins routed over the media nodes registered in Consul. `run` keeps the node list fresh in the
    background, so a join (`target_now`) never waits on Consul; `target` reads Consul first when the list is
    older than `REFRESH_S` (for callers without the background task)."""

    def __init__(
        self, client: consul.Consul, config: DiscoveryConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.region = config.region
        self._client = client
        self._service = config.service_name
        self._stale_limit_s = STALE_LIMIT_CHECKS * config.check_ttl_s
        self._clock = clock
        self._nodes: list[MediaNode] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Reads the node list from Consul; CONSUL_ERRORS propagate (the last list stays)."""
        async with self._lock:
            _index, entries = await asyncio.to_thread(self._client.health.service, self._service)
            self._nodes = nodes_from_health(entries)
            self._read_at = self._clock()

    def nodes_now(self) -> list[MediaNode]:
        """The last node list read; DiscoveryUnavailableError when there is none or it is too old to use."""
        age = self._clock() - self._read_at
        if self._nodes is None or age > self._stale_limit_s:
            raise DiscoveryUnavailableError(f"Consul is unavailable (no node list for {age:.0f} s)")
        return self._nodes

    def target_now(self, meeting_id: str, region: str) -> JoinTarget:
        return target_for(self.nodes_now(), meeting_id, region)

    async def target(self, meeting_id: str, region: str) -> JoinTarget:
        if self._nodes is None or self._clock() - self._read_at >= REFRESH_S:
            try:
                await self.refresh()
            except CONSUL_ERRORS as exc:
                log.warning("Consul is unavailable, routing from the last node list: %s", exc)
        return self.target_now(meeting_id, region)

    async def run(self, stop: asyncio.Event) -> None:
        """Refreshes the node list every `REFRESH_S` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.refresh()
            except CONSUL_ERRORS as exc:
                log.warning("Consul is unavailable, routing from the last node list: %s", exc)
            await _wait(stop, REFRESH_S)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.http.session.close)


class SharedConfig:
    """Configuration every node shares, as Consul KV entries under `discovery.kv_prefix`."""

    def __init__(self, client: consul.Consul, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, None when it is not set; DiscoveryUnavailableError when Consul is down."""
        try:
            _index, entry = await asyncio.to_thread(self._client.kv.get, self._prefix + key)
        except CONSUL_ERRORS as exc:
            raise DiscoveryUnavailableError(f"Consul is unavailable: {exc}") from None
        if entry is None:
            return None
        value = entry.get("Value")
        return b"" if value is None else bytes(value)

    async def put(self, key: str, value: bytes) -> None:
        try:
            stored = await asyncio.to_thread(self._client.kv.put, self._prefix + key, value)
        except CONSUL_ERRORS as exc:
            raise DiscoveryUnavailableError(f"Consul is unavailable: {exc}") from None
        if not stored:
            raise DiscoveryUnavailableError(f"Consul refused to store {self._prefix + key}")


class RegionLock:
    """A Consul lock (KV entry acquired with a session) named for one job in one region: at most one holder
    at a time. The session has a TTL: a holder that stops renewing (crashed, cut off) loses the lock, and
    Consul's lock delay then keeps it free for a while before another node may take it."""

    def __init__(self, client: consul.Consul, config: DiscoveryConfig, job: str, holder: str) -> None:
        self.key = f"{config.kv_prefix}locks/{config.region}/{job}"
        self._client = client
        self.ttl_s = round(config.lock_ttl_s)
        self.lock_delay_s = math.ceil(self.ttl_s / 3)
        """After a holder's session is invalidated, nobody may take the lock for this long: a holder cut off
        from Consul notices within a renewal interval (a third of the TTL) and stops its job by then."""
        self._holder = holder
        self._session: str | None = None

    @property
    def held(self) -> bool:
        return self._session is not None

    async def acquire(self) -> bool:
        """Takes the lock if it is free; False when another holder has it. CONSUL_ERRORS propagate."""
        if self._session is None:
            self._session = await asyncio.to_thread(
                self._client.session.create,
                name=f"{self._holder}:{self.key}",
                ttl=self.ttl_s,
                behavior="delete",
                lock_delay=self.lock_delay_s,
            )
        try:
            acquired = await asyncio.to_thread(
                self._client.kv.put, self.key, self._holder, acquire=self._session
            )
        except CONSUL_ERRORS:
            self._session = None  # perhaps invalidated meanwhile: the next try starts a new one
            raise
        if not acquired:
            await self._destroy()
        return bool(acquired)

    async def renew(self) -> bool:
        """Extends the session; False when it is gone (the lock is lost)."""
        if self._session is None:
            return False
        try:
            await asyncio.to_thread(self._client.session.renew, self._session)
        except consul.NotFound:
            self._session = None
            return False
        return True

    async def release(self) -> None:
        if self._session is None:
            return
        try:
            await asyncio.to_thread(self._client.kv.put, self.key, "", release=self._session)
        finally:
            await self._destroy()

    async def _destroy(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await asyncio.to_thread(self._client.session.destroy, session)


async def run_once_per_region(
    lock: RegionLock, job: Callable[[], Awaitable[None]], stop: asyncio.Event, *, retry_s: float
) -> None:
    """Runs `job` while this process holds `lock`, until `stop` is set: tries to take the lock every
    `retry_s`, renews it every third of its TTL while the job runs, and cancels the job the moment the lock
    is lost (or Consul cannot be reached to renew it). A job that returns is run again at the next hold."""
    renew_every = max(1.0, lock.ttl_s / 3)
    while not stop.is_set():
        try:
            acquired = await lock.acquire()
        except CONSUL_ERRORS as exc:
            log.warning("cannot reach Consul for the lock %s: %s", lock.key, exc)
            acquired = False
        if acquired:
            log.info("holding the lock %s", lock.key)
            await _hold(lock, job, stop, renew_every)
        if not stop.is_set():
            await _wait(stop, retry_s)
    try:
        await lock.release()
    except CONSUL_ERRORS as exc:
        log.warning("cannot release the lock %s (it expires with its session): %s", lock.key, exc)


async def _hold(
    lock: RegionLock, job: Callable[[], Awaitable[None]], stop: asyncio.Event, every: float
) -> None:
    running = asyncio.ensure_future(job())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            await asyncio.wait({running, stopped}, timeout=every, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done() or running.done():
                break
            try:
                kept = await lock.renew()
            except CONSUL_ERRORS as exc:
                log.warning("cannot renew the lock %s: %s", lock.key, exc)
                kept = False
            if not kept:
                log.warning("lost the lock %s; stopping its job", lock.key)
                break
    finally:
        stopped.cancel()
        running.cancel()
        await asyncio.gather(running, stopped, return_exceptions=True)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
