"""Fixtures of the client tests: a real worker (QUIC on 127.0.0.1) and a real control plane (HTTP) in process,
and meeting clients that join them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from darktower.client.api import ControlApi
from darktower.client.meeting import MeetingClient
from darktower.control.main import run_control
from darktower.core.certs import ServingCertificate
from darktower.core.config import Config, from_mapping
from darktower.core.tokens import TokenVerifier, load_or_create_signing_key, signing_key_path
from darktower.workers.server import WorkerServer

STARTUP_TIMEOUT = 15.0


@dataclass
class Cluster:
    config: Config
    verifier: TokenVerifier
    worker: WorkerServer
    http_url: str
    api: ControlApi
    clients: list[MeetingClient] = field(default_factory=list)

    async def join(self, meeting: str, name: str, *, publish: bool = True, **options: Any) -> MeetingClient:
        """A client that joined `meeting` (created if needed), subscribes to everyone and, with `publish`,
        sends synthetic audio and video. It leaves when the test ends, if it has not already."""
        await self.api.ensure_meeting(meeting)
        client = MeetingClient(self.api, meeting, name, auto_subscribe=True, **options)
        self.clients.append(client)
        await client.join()
        if publish:
            await client.publish("audio")
            await client.publish("video")
        return client

    @staticmethod
    def receives(receiver: MeetingClient, publisher: MeetingClient, minimum: int = 1) -> Callable[[], bool]:
        """Whether `receiver` has `minimum` audio and video frames from `publisher`'s current session."""

        def check() -> bool:
            pid = publisher.participant_id
            return all(receiver.stats.track(pid, kind).received >= minimum for kind in ("audio", "video"))

        return check

    async def restart_worker(self) -> None:
        """Stops the worker (its sessions end) and starts a new one on the same UDP port."""
        port = self.worker.port
        await self.worker.close()
        for _ in range(50):
            try:
                self.worker = await WorkerServer.start(self.config, verifier=self.verifier, port=port)
            except OSError:
                await asyncio.sleep(0.02)
            else:
                return
        pytest.fail(f"UDP port {port} did not become free again")


@pytest.fixture
async def cluster(tmp_path: Path, serving_certificate: ServingCertificate) -> AsyncIterator[Cluster]:
    config = from_mapping(
        {
            "server": {"host": "127.0.0.1", "http_port": 0, "quic_port": 0, "data_dir": str(tmp_path)},
            "tls": {
                "certificate": str(serving_certificate.cert_path),
                "private_key": str(serving_certificate.key_path),
            },
            "log": {"level": "warning"},
        }
    )
    key = load_or_create_signing_key(signing_key_path(config.server.data_dir, config.auth.signing_key))
    verifier = TokenVerifier(key.public_key(), config.auth.issuer)
    worker = await WorkerServer.start(config, verifier=verifier)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    control = asyncio.create_task(run_control(config, worker.port, on_ready=ready.set_result, stop=stop))
    async with asyncio.timeout(STARTUP_TIMEOUT):
        http_port = await ready
    http_url = f"http://127.0.0.1:{http_port}"
    async with ControlApi(http_url) as api:
        cluster = Cluster(config, verifier, worker, http_url, api)
        try:
            yield cluster
        finally:
            for client in cluster.clients:
                await client.leave()
            stop.set()
            await control
            await cluster.worker.close()
