"""Where a join is sent: the media node (host, QUIC port, certificate hashes) that will serve the meeting.

`Discovery` is the interface the join route asks (`target(meeting_id, region)`); two implementations:

- `StaticDiscovery` (the embedded default): always this node, with the port of the meeting's owner worker
  when the workers listen on a port each. Exactly what a single box needs.
- `ConsulDiscovery` (`darktower.control.consul_discovery`): every node registers itself in Consul (region,
  load, ports and certificate hashes in its service metadata, kept alive by a TTL check the supervisor
  passes), and a join goes to `choose_node` of the healthy ones.

The caller's region is the `X-Darktower-Region` header when a request carries one (`CallerRegion`), else
the control plane's own. `choose_node` is the routing rule, free of I/O: a healthy node of the caller's
region with the least load;
when that region has none, the least loaded healthy node of any region; ties go to the lowest node name,
so every control plane picks the same node from the same view. A meeting whose node list is empty (no
healthy node anywhere) cannot be joined: `NoMediaNodeError` (503 `no_media_node`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from darktower.control.api_common import ApiError
from darktower.control.store import ControlError, Meeting
from darktower.core.certs import CertificateError
from darktower.workers.shard import owner_index

log = logging.getLogger(__name__)


class NoMediaNodeError(ControlError):
    """No healthy media node can take the join now."""


class DiscoveryUnavailableError(ControlError):
    """The discovery service (Consul) cannot be reached and nothing usable is cached."""


@dataclass(frozen=True, slots=True)
class MediaNode:
    """One media node as discovery sees it."""

    name: str
    region: str
    host: str
    """Host name or address clients reach its QUIC port on."""
    ports: tuple[int, ...]
    """One UDP port for all workers, or one per worker (worker k on `ports[k]`)."""
    certificate_hashes: tuple[bytes, ...]
    """SHA-256 of the certificates it serves that browsers may accept by hash; empty for Web PKI ones."""
    load: float
    """Lower is better: open QUIC connections over all its workers."""
    healthy: bool

    def port_for(self, meeting_id: str) -> int:
        """The port serving `meeting_id`: the owner worker's when each worker has its own."""
        return self.ports[owner_index(meeting_id, len(self.ports))] if len(self.ports) > 1 else self.ports[0]


@dataclass(frozen=True, slots=True)
class JoinTarget:
    host: str
    port: int
    certificate_hashes: tuple[bytes, ...]
    node: str
    region: str

    def url(self, meeting_id: str) -> str:
        """The meeting's WebTransport URL on this node."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"https://{host}:{self.port}/meetings/{meeting_id}"


def choose_node(nodes: Sequence[MediaNode], region: str) -> MediaNode | None:
    """The node a join from `region` goes to (see the module docstring); None when none is healthy."""
    healthy = [node for node in nodes if node.healthy]
    local = [node for node in healthy if node.region == region]
    pool = local or healthy
    return min(pool, key=lambda node: (node.load, node.name)) if pool else None


def target_for(nodes: Sequence[MediaNode], meeting_id: str, region: str) -> JoinTarget:
    """Where a join of `meeting_id` from `region` goes; NoMediaNodeError when nowhere."""
    node = choose_node(nodes, region)
    if node is None:
        raise NoMediaNodeError(f"no healthy media node in region {region!r} or any other; try again shortly")
    return JoinTarget(
        host=node.host,
        port=node.port_for(meeting_id),
        certificate_hashes=node.certificate_hashes,
        node=node.name,
        region=node.region,
    )


class Discovery(Protocol):
    region: str
    """This control plane's own region: where joins that name none go."""

    def target_now(self, meeting_id: str, region: str) -> JoinTarget:
        """Where a join of `meeting_id` from a caller in `region` goes, from what is known now (no I/O)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Keeps what `target_now` knows up to date until `stop` is set."""

    async def close(self) -> None:
        """Releases the discovery's resources."""


class StaticDiscovery:
    """This node only: `host`, `ports` (one, or one per worker) and its certificate hashes read per join
    (self-signed certificates rotate)."""

    def __init__(
        self,
        *,
        name: str,
        region: str,
        host: str,
        ports: Sequence[int],
        certificate_hashes: Callable[[], Sequence[bytes]],
    ) -> None:
        if not ports:
            raise ValueError("a node has at least one QUIC port")
        self.region = region
        self._name = name
        self._host = host
        self._ports = tuple(ports)
        self._hashes = certificate_hashes

    def node(self) -> MediaNode:
        return MediaNode(
            name=self._name,
            region=self.region,
            host=self._host,
            ports=self._ports,
            certificate_hashes=tuple(self._hashes()),
            load=0.0,
            healthy=True,
        )

    def target_now(self, meeting_id: str, region: str) -> JoinTarget:
        # One node: whatever region the caller names, this node serves it (the cross-region fallback).
        return target_for([self.node()], meeting_id, region)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def close(self) -> None:
        return None


REGION_HEADER: Final = "x-darktower-region"
"""Names the caller's region (set by a geo-aware edge proxy, or by a client that knows where it is);
without it, or with a malformed one, the caller is taken to be in the control plane's own region (callers
reach the control plane of their region: regional DNS). It only chooses where the caller is served."""
_REGION_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_caller_region: ContextVar[str | None] = ContextVar("darktower_caller_region", default=None)


class CallerRegion:
    """ASGI middleware: makes the request's `X-Darktower-Region` visible to `join_target_of` (a context
    variable, so the route's signature stays what it is)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        region = None
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == REGION_HEADER.encode() and _REGION_RE.fullmatch(value.decode("latin-1")):
                    region = value.decode("latin-1")
        token = _caller_region.set(region)
        try:
            await self._app(scope, receive, send)
        finally:
            _caller_region.reset(token)


def join_target_of(discovery: Discovery) -> Callable[[Meeting], tuple[str, list[bytes]]]:
    """What the join route asks (`MeetingDeps.join_target`): the meeting's WebTransport URL and certificate
    hashes on the node `discovery` picks for the caller's region (`REGION_HEADER`, else this control plane's).
    Refusals: 503 `no_media_node`, `discovery_unavailable`, `certificates_unavailable`."""

    def join_target(meeting: Meeting) -> tuple[str, list[bytes]]:
        region = _caller_region.get() or discovery.region
        try:
            target = discovery.target_now(meeting.meeting_id, region)
        except NoMediaNodeError as exc:
            raise ApiError(503, "no_media_node", str(exc)) from None
        except DiscoveryUnavailableError as exc:
            raise ApiError(503, "discovery_unavailable", f"{exc}; try again shortly") from None
        except CertificateError as exc:
            log.exception("cannot read the certificate store", extra={"meeting_id": meeting.meeting_id})
            raise ApiError(503, "certificates_unavailable", str(exc)) from None
        return target.url(meeting.meeting_id), list(target.certificate_hashes)

    return join_target
