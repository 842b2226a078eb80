"""A node's own entry in Consul: its QUIC endpoint registered as a service with its region, load, ports and
certificate hashes in the service metadata, and a TTL check that the supervisor passes while its workers
are alive.

`NodeRegistration.beat(meta)` is one heartbeat: it (re-)registers the service when its metadata changed
(registration is idempotent in Consul; a changed load or a rotated certificate needs it) and passes the
TTL check. A node whose supervisor stops beating turns critical after `discovery.check_ttl_s`, drops out of
every control plane's routing, and is deregistered by Consul after `discovery.deregister_after_s`.

`ConsulHeartbeat` runs those beats on a thread of the supervisor (the supervisor's own loop never waits on
Consul), every third of the check TTL, with the metadata from a callable the supervisor supplies; a Consul
that cannot be reached is logged and retried at the next beat.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Final

import consul

from darktower.control.consul_discovery import CONSUL_ERRORS, NodeMeta, consul_client
from darktower.control.main import certificate_hashes_for
from darktower.core.config import Config, DiscoveryConfig
from darktower.workers.heartbeat import HeartbeatTable, WorkerState

log = logging.getLogger(__name__)

BEATS_PER_TTL: Final = 3


def node_name(config: DiscoveryConfig) -> str:
    return config.node_name or socket.gethostname()


def service_id(config: DiscoveryConfig) -> str:
    return f"{config.service_name}-{node_name(config)}"


class NodeRegistration:
    def __init__(self, client: consul.Consul, config: DiscoveryConfig, host: str) -> None:
        self.service_id = service_id(config)
        self.check_id = f"{self.service_id}-ttl"
        self._client = client
        self._config = config
        self._host = host
        self._registered: NodeMeta | None = None

    def beat(self, meta: NodeMeta | None) -> None:
        """Registers (when `meta` changed since the last registration) and passes the TTL check; with
        `meta` None (no worker can serve now) fails the check instead, so joins go elsewhere at once.
        CONSUL_ERRORS propagate; the next beat registers again."""
        if meta is None:
            if self._registered is not None:
                self._client.agent.check.ttl_fail(self.check_id, notes="no running worker")
            return
        if meta != self._registered:
            self._registered = None
            self._register(meta)
            self._registered = meta
        self._client.agent.check.ttl_pass(self.check_id, notes=f"load {meta.load}")

    def deregister(self) -> None:
        self._client.agent.service.deregister(self.service_id)
        self._registered = None

    def _register(self, meta: NodeMeta) -> None:
        check = {
            "CheckID": self.check_id,
            "Name": "darktower supervisor heartbeat",
            "TTL": f"{self._config.check_ttl_s:g}s",
            "DeregisterCriticalServiceAfter": f"{self._config.deregister_after_s:g}s",
        }
        self._client.agent.service.register(
            self._config.service_name,
            service_id=self.service_id,
            address=self._host,
            port=meta.ports[0],
            tags=[f"region-{meta.region}"],
            meta=meta.encode(),
            check=check,
        )
        log.info("registered in Consul", extra={"peer": f"{self._host}:{meta.ports[0]}"})


class ConsulHeartbeat:
    """The supervisor's beats into Consul, on a daemon thread, from `start()` to `stop()` (which
    deregisters the node, so it stops receiving joins at once)."""

    def __init__(self, config: Config, meta: Callable[[], NodeMeta | None]) -> None:
        discovery = config.discovery
        self._registration = NodeRegistration(
            consul_client(discovery), discovery, config.server.advertised_host
        )
        self._meta = meta
        self._interval_s = discovery.check_ttl_s / BEATS_PER_TTL
        self._stop = threading.Event()
        self.beaten = threading.Event()
        """Set after the first beat Consul accepted (for callers that wait for the registration)."""
        self._thread = threading.Thread(target=self._run, name="consul-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._registration.deregister()
        except CONSUL_ERRORS as exc:
            log.warning("cannot deregister from Consul (its TTL check will expire): %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._registration.beat(self._meta())
                self.beaten.set()
            except CONSUL_ERRORS as exc:
                log.warning("cannot reach Consul to pass the node's health check: %s", exc)
            self._stop.wait(self._interval_s)


def start_node_heartbeat(
    config: Config, table: HeartbeatTable, ports: Sequence[int]
) -> ConsulHeartbeat | None:
    """The supervisor's hook: with `discovery.mode = "consul"`, registers this node (its QUIC `ports`, the
    certificate hashes join replies list, its load: open connections over its running workers, read from
    the heartbeat table) and starts passing its TTL check, or failing it while no worker is running (all
    restarting or draining); None (nothing to do) with static discovery."""
    if config.discovery.mode != "consul":
        return None
    hashes = certificate_hashes_for(config)
    region = config.discovery.region

    def meta() -> NodeMeta | None:
        running = [w for w in table.snapshot().workers if w.state is WorkerState.RUNNING]
        if not running:
            return None
        load = sum(w.connections for w in running)
        return NodeMeta(region=region, load=load, ports=tuple(ports), certificate_hashes=tuple(hashes()))

    heartbeat = ConsulHeartbeat(config, meta)
    heartbeat.start()
    return heartbeat
