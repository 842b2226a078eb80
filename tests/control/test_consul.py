"""Discovery by region through Consul: the routing rule itself, then py-consul over real HTTP against the
Consul stand-in (`consul_standin`, a model of exactly the endpoints used, NOT Consul), then against a real
agent when `CONSUL_HTTP_ADDR` names one. Without it that test is SKIPPED, and a skip is not a pass: only a
run with a real agent shows that the stand-in and Consul agree."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from darktower.control.consul_config import overlay, with_shared_config
from darktower.control.consul_discovery import (
    REFRESH_S,
    ConsulDiscovery,
    NodeMeta,
    RegionLock,
    SharedConfig,
    consul_client,
    nodes_from_health,
    run_once_per_region,
)
from darktower.control.consul_registration import ConsulHeartbeat, NodeRegistration, start_node_heartbeat
from darktower.control.consul_standin import ConsulStandIn
from darktower.control.discovery import (
    DiscoveryUnavailableError,
    MediaNode,
    NoMediaNodeError,
    StaticDiscovery,
    choose_node,
)
from darktower.control.main import certificate_hashes_for, run_control
from darktower.core.config import ConfigError, DiscoveryConfig, from_mapping
from darktower.workers.heartbeat import HeartbeatTable, WorkerState

H1, H2 = bytes(range(32)), bytes(32)
DEADLINE_S = 10.0


def node(
    name: str, region: str, load: float, *, healthy: bool = True, ports: tuple[int, ...] = (4433,)
) -> MediaNode:
    return MediaNode(
        name=name,
        region=region,
        host=f"{name}.example",
        ports=ports,
        certificate_hashes=(),
        load=load,
        healthy=healthy,
    )


# --- the routing rule --------------------------------------------------------------------------------------


def test_a_join_goes_to_the_least_loaded_healthy_node_of_its_region() -> None:
    nodes = [
        node("eu-1", "eu", 5),
        node("eu-2", "eu", 2),
        node("eu-3", "eu", 1, healthy=False),
        node("us-1", "us", 0),
    ]
    chosen = choose_node(nodes, "eu")
    assert chosen is not None
    assert chosen.name == "eu-2"


def test_a_region_without_healthy_nodes_sends_joins_to_the_least_loaded_elsewhere() -> None:
    nodes = [node("eu-1", "eu", 0, healthy=False), node("us-1", "us", 7), node("ap-1", "ap", 3)]
    chosen = choose_node(nodes, "eu")
    assert chosen is not None
    assert chosen.name == "ap-1"
    assert choose_node([node("eu-1", "eu", 0, healthy=False)], "eu") is None
    assert choose_node([], "eu") is None


def test_ties_go_to_the_lowest_name_so_every_control_plane_agrees() -> None:
    nodes = [node("b", "eu", 1), node("a", "eu", 1), node("c", "eu", 1)]
    assert [choose_node(list(order), "eu") for order in (nodes, nodes[::-1])] == [nodes[1], nodes[1]]


def test_with_a_port_per_worker_the_meeting_owners_port_is_named() -> None:
    many = node("eu-1", "eu", 0, ports=(5000, 5001, 5002, 5003))
    ports = {many.port_for(f"m{i}") for i in range(64)}
    assert ports == {5000, 5001, 5002, 5003}
    assert many.port_for("m7") == many.port_for("m7")


async def test_static_discovery_is_this_node_whatever_the_region() -> None:
    static = StaticDiscovery(
        name="box", region="default", host="media.example", ports=[4433], certificate_hashes=lambda: [H1]
    )
    target = static.target_now("m1", "elsewhere")
    assert (target.host, target.port, target.certificate_hashes) == ("media.example", 4433, (H1,))


def test_node_metadata_round_trips_and_malformed_entries_are_left_out() -> None:
    meta = NodeMeta(region="eu", load=12, ports=(4433, 4434), certificate_hashes=(H1, H2))
    assert NodeMeta.decode(meta.encode()) == meta
    good = {
        "Service": {"ID": "n1", "Address": "n1.example", "Meta": meta.encode()},
        "Checks": [{"Status": "passing"}],
    }
    bad_ports = {
        "Service": {"ID": "n2", "Address": "x", "Meta": {**meta.encode(), "quic_ports": "0"}},
        "Checks": [],
    }
    bad_hash = {
        "Service": {"ID": "n3", "Address": "x", "Meta": {**meta.encode(), "cert_sha256": "abcd"}},
        "Checks": [],
    }
    no_meta = {"Service": {"ID": "n4", "Address": "x"}, "Checks": []}
    warning = {
        "Service": {"ID": "n5", "Address": "n5.example", "Meta": meta.encode()},
        "Checks": [{"Status": "warning"}],
    }
    nodes = nodes_from_health([good, bad_ports, bad_hash, no_meta, warning])
    assert [(n.name, n.healthy) for n in nodes] == [("n1", True), ("n5", False)]
    assert nodes[0].ports == (4433, 4434)
    assert nodes[0].certificate_hashes == (H1, H2)


# --- py-consul against the stand-in ----------------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[ConsulStandIn]:
    server = ConsulStandIn()
    yield server
    server.close()


def settings(url: str, **extra: object) -> DiscoveryConfig:
    return from_mapping(
        {"discovery": {"mode": "consul", "consul_url": url, "check_ttl_s": 10, **extra}}
    ).discovery


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def register(
    url: str, name: str, region: str, load: int, ports: tuple[int, ...] = (4433,)
) -> NodeRegistration:
    config = settings(url, node_name=name, region=region)
    registration = NodeRegistration(consul_client(config), config, f"{name}.example")
    registration.beat(NodeMeta(region=region, load=load, ports=ports, certificate_hashes=(H1,)))
    return registration


async def test_joins_are_routed_by_region_and_load_through_consul(standin: ConsulStandIn) -> None:
    eu1 = register(standin.url, "eu-1", "eu", load=5)
    register(standin.url, "eu-2", "eu", load=2, ports=(5000, 5001))
    register(standin.url, "us-1", "us", load=0)
    clock = FakeClock()
    config = settings(standin.url, region="eu")
    discovery = ConsulDiscovery(consul_client(config), config, clock=clock)
    try:
        target = await discovery.target("m1", "eu")
        assert (target.node, target.region, target.host) == ("darktower-media-eu-2", "eu", "eu-2.example")
        assert target.port in {5000, 5001}
        assert target.certificate_hashes == (H1,)
        assert (await discovery.target("m1", "ap")).region == "us", (
            "a region without nodes goes to the least loaded"
        )

        eu1.beat(NodeMeta(region="eu", load=1, ports=(4433,), certificate_hashes=(H1,)))
        assert (await discovery.target("m1", "eu")).node == "darktower-media-eu-2", "cached for REFRESH_S"
        clock.now += REFRESH_S
        assert (await discovery.target("m1", "eu")).node == "darktower-media-eu-1", "the new load is seen"

        standin.advance(10)  # nobody passed a check for a whole TTL: every node is critical
        assert standin.check_status(eu1.check_id) == "critical"
        clock.now += REFRESH_S
        with pytest.raises(NoMediaNodeError):
            await discovery.target("m1", "eu")
        register(standin.url, "us-1", "us", load=0)
        clock.now += REFRESH_S
        assert (await discovery.target("m1", "eu")).node == "darktower-media-us-1", "eu has none: us takes it"
    finally:
        await discovery.close()


async def test_while_consul_is_down_joins_use_the_last_node_list_for_a_while(standin: ConsulStandIn) -> None:
    register(standin.url, "eu-1", "eu", load=0)
    clock = FakeClock()
    config = settings(standin.url, region="eu")
    discovery = ConsulDiscovery(consul_client(config), config, clock=clock)
    try:
        assert (await discovery.target("m1", "eu")).node == "darktower-media-eu-1"
        standin.fail()
        clock.now += 2 * config.check_ttl_s
        assert (await discovery.target("m1", "eu")).node == "darktower-media-eu-1"
        clock.now += 2 * config.check_ttl_s
        with pytest.raises(DiscoveryUnavailableError, match="Consul is unavailable"):
            await discovery.target("m1", "eu")
        standin.fail(failing=False)
        assert (await discovery.target("m1", "eu")).node == "darktower-media-eu-1", "recovers by itself"
    finally:
        await discovery.close()


async def test_the_supervisor_heartbeat_keeps_the_node_registered_and_passing(standin: ConsulStandIn) -> None:
    config = from_mapping(
        {
            "server": {"public_host": "node-a.example"},
            "discovery": {
                "mode": "consul",
                "consul_url": standin.url,
                "node_name": "a",
                "region": "eu",
                "check_ttl_s": 3,
            },
        }
    )
    loads = iter(range(1000))
    heartbeat = ConsulHeartbeat(
        config, lambda: NodeMeta(region="eu", load=next(loads), ports=(4433,), certificate_hashes=(H1,))
    )
    heartbeat.start()
    try:
        assert await asyncio.to_thread(heartbeat.beaten.wait, DEADLINE_S)
        assert standin.check_status("darktower-media-a-ttl") == "passing"
        service = standin.state.services["darktower-media-a"]
        assert service["Address"] == "node-a.example"
        assert service["Meta"]["region"] == "eu"
    finally:
        await asyncio.to_thread(heartbeat.stop)
    assert "darktower-media-a" not in standin.state.services, "a stopped node deregisters at once"


async def test_shared_configuration_lives_in_kv(standin: ConsulStandIn) -> None:
    config = settings(standin.url)
    shared = SharedConfig(consul_client(config), config.kv_prefix)
    assert await shared.get("rate_limits/join_burst") is None
    await shared.put("rate_limits/join_burst", b"50")
    assert await shared.get("rate_limits/join_burst") == b"50"
    assert standin.state.kv["darktower/rate_limits/join_burst"].value == b"50"
    standin.fail()
    with pytest.raises(DiscoveryUnavailableError):
        await shared.get("rate_limits/join_burst")


async def test_a_region_lock_has_one_holder_and_passes_on_when_it_is_released_or_expires(
    standin: ConsulStandIn,
) -> None:
    config = settings(standin.url, region="eu", lock_ttl_s=15)
    first = RegionLock(consul_client(config), config, "cleanup", holder="node-a")
    second = RegionLock(consul_client(config), config, "cleanup", holder="node-b")
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.renew()

    await first.release()
    assert await second.acquire(), "a lock released on purpose passes on at once"

    standin.advance(15)  # the holder stopped renewing: its session, and so its lock, is gone
    assert not await second.renew()
    assert not second.held
    assert not await first.acquire(), "the lock delay keeps an expired holder's lock free for a while"
    standin.advance(second.lock_delay_s)
    assert await first.acquire()
    await first.release()


async def test_a_once_per_region_job_runs_on_one_node_only_and_moves_when_its_holder_stops(
    standin: ConsulStandIn,
) -> None:
    config = settings(standin.url, region="eu", lock_ttl_s=10)
    running: list[str] = []
    started = {name: asyncio.Event() for name in ("a", "b")}

    def job_of(name: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            running.append(name)
            started[name].set()
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)

        return job

    stops = {name: asyncio.Event() for name in ("a", "b")}
    tasks = {}
    for name in ("a", "b"):
        lock = RegionLock(consul_client(config), config, "cleanup", holder=name)
        tasks[name] = asyncio.create_task(run_once_per_region(lock, job_of(name), stops[name], retry_s=0.05))
    try:
        first = await asyncio.wait_for(_first_set(started), DEADLINE_S)
        other = "b" if first == "a" else "a"
        assert running == [first]
        stops[first].set()
        await asyncio.wait_for(tasks[first], DEADLINE_S)
        await asyncio.wait_for(started[other].wait(), DEADLINE_S)
        assert running == [other]
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), DEADLINE_S)
    assert running == []


async def _first_set(events: dict[str, asyncio.Event]) -> str:
    waits = {asyncio.ensure_future(event.wait()): name for name, event in events.items()}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return waits[next(iter(done))]


# --- a real Consul agent ----------------------------------------------------------------------------------

REAL_AGENT = os.environ.get("CONSUL_HTTP_ADDR", "")


@pytest.mark.skipif(
    not REAL_AGENT, reason="NOT RUN (not a pass): set CONSUL_HTTP_ADDR to a real Consul agent to run it"
)
async def test_against_a_real_consul_agent() -> None:
    url = REAL_AGENT if "://" in REAL_AGENT else f"http://{REAL_AGENT}"
    suffix = secrets.token_hex(4)
    config = settings(
        url,
        region=f"test{suffix}",
        service_name=f"darktower-test-{suffix}",
        kv_prefix=f"darktower-test-{suffix}/",
    )
    registrations = []
    for name, load in (("eu-1", 4), ("eu-2", 1)):
        node_config = settings(url, node_name=name, region=config.region, service_name=config.service_name)
        registration = NodeRegistration(consul_client(node_config), node_config, f"{name}.example")
        registration.beat(NodeMeta(region=config.region, load=load, ports=(4433,), certificate_hashes=(H1,)))
        registrations.append(registration)
    discovery = ConsulDiscovery(consul_client(config), config)
    shared = SharedConfig(consul_client(config), config.kv_prefix)
    locks = [RegionLock(consul_client(config), config, "job", holder=h) for h in ("a", "b")]
    try:
        target = await discovery.target("m1", config.region)
        assert target.node == f"{config.service_name}-eu-2"
        assert target.certificate_hashes == (H1,)
        await shared.put("key", b"value")
        assert await shared.get("key") == b"value"
        assert await locks[0].acquire()
        assert not await locks[1].acquire()
        assert await locks[0].renew()
    finally:
        await locks[0].release()
        for registration in registrations:
            registration.deregister()
        consul_client(config).kv.delete(config.kv_prefix, recurse=True)
        await discovery.close()


async def test_the_supervisor_hook_publishes_the_load_of_its_running_workers(
    standin: ConsulStandIn, tmp_path: Path
) -> None:
    config = from_mapping(
        {
            "server": {"data_dir": str(tmp_path), "public_host": "node-b.example"},
            "discovery": {"mode": "consul", "consul_url": standin.url, "node_name": "b", "region": "us"},
        }
    )
    assert start_node_heartbeat(from_mapping({}), table=None, ports=[4433]) is None  # type: ignore[arg-type]
    name = f"/darktower-test-{os.getpid()}-{secrets.token_hex(4)}"
    table = HeartbeatTable.create(
        name, 2, supervisor_pid=os.getpid(), now_ns=1, heartbeat_timeout_ns=3_000_000_000
    )
    try:
        for index, connections in ((0, 5), (1, 7)):
            table.worker_spawned(index, pid=100 + index, now_ns=1, restarts=0)
            table.beat(index, 2, connections=connections, meetings=1, ring_lag=0)
        table.set_state(0, WorkerState.RUNNING)
        table.set_state(1, WorkerState.DRAINING)
        heartbeat = start_node_heartbeat(config, table, [5000, 5001])
        assert heartbeat is not None
        try:
            assert await asyncio.to_thread(heartbeat.beaten.wait, DEADLINE_S)
        finally:
            await asyncio.to_thread(heartbeat.stop)
    finally:
        table.close()
        HeartbeatTable.unlink(name)
    assert standin.state.registrations, "the node registered"
    assert standin.state.registrations[0]["meta"] == {
        "region": "us",
        "load": "5",
        "quic_ports": "5000,5001",
        "cert_sha256": ",".join(h.hex() for h in certificate_hashes_for(config)()),
    }


async def test_a_served_control_plane_routes_joins_through_consul(
    standin: ConsulStandIn, tmp_path: Path
) -> None:
    register(standin.url, "eu-1", "eu", load=9)
    register(standin.url, "eu-2", "eu", load=3, ports=(6000,))
    register(standin.url, "us-1", "us", load=0)
    config = from_mapping(
        {
            "server": {"data_dir": str(tmp_path), "http_port": 0, "web_root": str(tmp_path)},
            "auth": {"password_hash_time_cost": 1, "password_hash_memory_kib": 64},
            "discovery": {"mode": "consul", "consul_url": standin.url, "region": "eu"},
        }
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(run_control(config, 4433, on_ready=ready.set_result, stop=stop))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), DEADLINE_S)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.post("/v1/meetings", json={"meeting_id": "m1"})).status_code == 201
            joined = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
            assert joined.status_code == 200, joined.text
            assert joined.json()["webtransport_url"] == "https://eu-2.example:6000/meetings/m1"
            assert joined.json()["certificate_hashes"] == [{"algorithm": "sha-256", "value": H1.hex()}]
            from_us = await client.post(
                "/v1/meetings/m1/join", json={"display_name": "Ada"}, headers={"X-Darktower-Region": "us"}
            )
            assert from_us.json()["webtransport_url"] == "https://us-1.example:4433/meetings/m1"
            odd = await client.post(
                "/v1/meetings/m1/join", json={"display_name": "Ada"}, headers={"X-Darktower-Region": "u s!"}
            )
            assert odd.json()["webtransport_url"].startswith("https://eu-2.example"), "malformed: own region"

            standin.advance(10)  # every node's check expires: nowhere to send a join
            await _refreshed(standin)
            refused = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "no_media_node"
            register(standin.url, "us-1", "us", load=0)
            await _refreshed(standin)
            moved = await client.post("/v1/meetings/m1/join", json={"display_name": "Ada"})
            assert moved.json()["webtransport_url"] == "https://us-1.example:4433/meetings/m1"
    finally:
        stop.set()
        await asyncio.wait_for(server, DEADLINE_S)


async def _refreshed(standin: ConsulStandIn) -> None:
    """Returns once the control plane routes from a node list read after the change: its reads are sequential,
    so when a second read arrives, the answer to the first (sent after the change) has been applied."""
    path = "/v1/health/service/darktower-media"
    assert await asyncio.to_thread(standin.wait_for_requests, path, 2, DEADLINE_S)


async def test_shared_configuration_in_kv_is_laid_over_the_local_one(standin: ConsulStandIn) -> None:
    local = from_mapping({"discovery": {"mode": "consul", "consul_url": standin.url}})
    shared = SharedConfig(consul_client(local.discovery), local.discovery.kv_prefix)
    assert await with_shared_config(local, shared) == local, "nothing shared: the local configuration"
    document = {
        "rate_limits": {"join_burst": 3, "when_unavailable": "refuse"},
        "auth": {"admins": ["root@x"]},
    }
    await shared.put("config", json.dumps(document).encode())
    merged = await with_shared_config(local, shared)
    assert (merged.rate_limits.join_burst, merged.rate_limits.when_unavailable) == (3, "refuse")
    assert merged.rate_limits.login_burst == local.rate_limits.login_burst
    assert merged.auth.admins == ("root@x",)
    standin.fail()
    assert await with_shared_config(local, shared) == local, (
        "Consul down at start-up: the local configuration"
    )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b"{not json", "darktower/config: not JSON"),
        (b"[1]", "darktower/config: must be a JSON object"),
        (b'{"store": {"durable": "postgres"}}', "darktower/config: store: not shareable"),
        (b'{"auth": {"issuer": "x"}}', "darktower/config: auth.issuer: not shareable"),
        (b'{"rate_limits": {"join_burst": 0}}', "darktower/config: rate_limits.join_burst: 0 is outside"),
        (b'{"rate_limits": 5}', "darktower/config: rate_limits: must be an object"),
    ],
)
def test_a_bad_shared_configuration_is_refused_naming_the_entry_and_key(document: bytes, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        overlay(from_mapping({}), document, "Consul KV darktower/config")


def test_a_node_without_a_running_worker_fails_its_check_at_once(standin: ConsulStandIn) -> None:
    config = settings(standin.url, node_name="idle", region="eu")
    fresh = NodeRegistration(consul_client(config), config, "idle.example")
    fresh.beat(None)
    assert standin.state.requests == [], "nothing registered yet: nothing to fail"
    registration = register(standin.url, "eu-1", "eu", load=0)
    assert standin.check_status(registration.check_id) == "passing"
    registration.beat(None)
    assert standin.check_status(registration.check_id) == "critical"
    registration.beat(NodeMeta(region="eu", load=0, ports=(4433,), certificate_hashes=(H1,)))
    assert standin.check_status(registration.check_id) == "passing"
