"""`WorkerServer`: the WebTransport listener glued to the sans-I/O `WorkerCore`.

The server turns each session's events into core calls and carries out the actions the core returns:
signaling on the session's signaling stream (the first bidirectional stream its client opens), audio
datagrams, and video with one server-opened unidirectional stream per (subscriber, track, group).

Backlog: after each video write the server compares what that subscriber's streams for the track still
hold unsent with what its connection can send in `limits.max_queued_ms` (congestion window / RTT). Over
that, the subscriber's streams for the track are reset and the core told (`subscriber_lagging`), so a slow
subscriber skips to the next group instead of falling further behind; nobody else is affected.

Certificates: the configured `tls.certificate` when set; otherwise the newest valid self-signed certificate
of the store (`certificate_dir`, or `<server.data_dir>/tls`), checked again every minute so new connections
get a rotated certificate while open ones keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from darktower.core.certs import (
    CertificateStore,
    ServingCertificate,
    load_certificate,
    store_for,
    utcnow,
)
from darktower.core.config import Config
from darktower.core.tokens import TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.workers.actions import (
    CloseSession,
    EndVideoGroup,
    SendDatagram,
    SendSignaling,
    SendVideo,
)
from darktower.workers.admin_state import Oversight
from darktower.workers.cluster_core import ClusterCore
from darktower.workers.cluster_io import ClusterLink
from darktower.workers.cluster_records import (
    INCARNATION_LIMIT,
    MAX_WORKERS,
    ClusterAction,
    RecordError,
    WriteControl,
    WriteMedia,
    decode_control,
)
from darktower.workers.core import WorkerCore
from darktower.workers.errors import WorkerError
from darktower.workers.ring import Gap, RecordKind, RingCursor
from darktower.workers.webtransport import (
    MIN_SEND_BUDGET,
    OutgoingStream,
    ServerSession,
    WebTransportListener,
    server_configuration,
)

log = logging.getLogger(__name__)

CERTIFICATE_CHECK_S: Final = 60.0
CLUSTER_TICK_S: Final = 0.25
"""How often a cluster worker sends the keyframe requests its meetings held back (`ClusterCore.tick`)."""
_SHUTDOWN_REASON: Final = "server shutting down"


def now_us() -> int:
    """Wall-clock µs: the core compares it with token expiry and echoes it in Pong."""
    return time.time_ns() // 1000


class Core(Protocol):
    """What the adapter drives: `WorkerCore` alone, or `ClusterCore` when the worker is one of several."""

    def session_opened(self, session: int, meeting_id: str, now_us: int) -> Sequence[ClusterAction]: ...
    def signaling_received(self, session: int, data: bytes, now_us: int) -> Sequence[ClusterAction]: ...
    def datagram_received(self, session: int, data: bytes, now_us: int) -> Sequence[ClusterAction]: ...
    def media_stream_received(
        self, session: int, stream_id: int, data: bytes, end_stream: bool, now_us: int
    ) -> Sequence[ClusterAction]: ...
    def media_stream_reset(self, session: int, stream_id: int, now_us: int) -> Sequence[ClusterAction]: ...
    def subscriber_lagging(self, session: int, track_id: int, now_us: int) -> Sequence[ClusterAction]: ...
    def session_closed(self, session: int, now_us: int) -> Sequence[ClusterAction]: ...
    def dump(self) -> dict[str, Any]: ...
    def host_action(
        self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str, now_us: int
    ) -> Sequence[ClusterAction]: ...
    def snapshot(self) -> list[dict[str, Any]]: ...
    @property
    def oversight(self) -> Oversight: ...


class _VideoOut:
    """A subscriber's streams for one track: the current group's, and earlier ones still draining."""

    __slots__ = ("current", "draining", "group")

    def __init__(self) -> None:
        self.current: OutgoingStream | None = None
        self.group = -1
        self.draining: list[OutgoingStream] = []

    def unsent(self) -> int:
        total = self.current.unsent if self.current is not None else 0
        for stream in self.draining:
            total += stream.unsent
        return total


class _Peer:
    __slots__ = ("meeting_id", "session", "signaling", "video")

    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.meeting_id = session.meeting_id
        self.signaling: int | None = None
        self.video: dict[int, _VideoOut] = {}


class _Certificates:
    """Where the serving certificate comes from: fixed files, or a self-signed store to follow."""

    def __init__(self, config: Config, certificate_dir: Path | None) -> None:
        tls = config.tls
        self._fixed: tuple[Path, Path] | None = None
        self._store: CertificateStore | None = None
        if tls.certificate:
            self._fixed = (Path(tls.certificate), Path(tls.private_key))
        elif certificate_dir is not None:
            self._store = CertificateStore(
                certificate_dir,
                timedelta(hours=tls.self_signed_validity_hours),
                timedelta(hours=tls.rotate_before_expiry_hours),
            )
        else:
            self._store = store_for(
                config.server.data_dir, tls.self_signed_validity_hours, tls.rotate_before_expiry_hours
            )

    @property
    def rotates(self) -> bool:
        return self._store is not None

    def current(self) -> ServingCertificate:
        if self._store is not None:
            return self._store.current(utcnow())
        assert self._fixed is not None
        return load_certificate(*self._fixed)


class WorkerServer:
    """One worker's QUIC endpoint; also the `SessionHandler` of its listener."""

    def __init__(self, config: Config, core: Core, certificates: _Certificates) -> None:
        self._core = core
        self._cluster: ClusterCore | None = None
        self._link: ClusterLink | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.ring_errors = 0
        """Ring records that were not well-formed records (skipped)."""
        self._certificates = certificates
        self._max_queued_ms = config.limits.max_queued_ms
        self._peers: dict[int, _Peer] = {}
        self._listener: WebTransportListener | None = None
        self._serving: ServingCertificate | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0

    @classmethod
    async def start(
        cls,
        config: Config,
        *,
        verifier: TokenVerifier,
        certificate_dir: Path | None = None,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
        worker_index: int | None = None,
    ) -> WorkerServer:
        """Listens on `host:port` (default: the configuration's), or on the bound `sock` the supervisor
        handed over; with `worker_index`, connection IDs name this worker (see `WebTransportListener.listen`)."""
        certificates = _Certificates(config, certificate_dir)
        serving = certificates.current()
        workers = config.server.workers
        cluster: ClusterCore | None = None
        core: Core
        if workers > MAX_WORKERS:
            raise WorkerError(
                f"server.workers: {workers} workers, but a meeting can span at most {MAX_WORKERS} (one ring "
                "reader slot per worker)"
            )
        if workers > 1 and worker_index is not None:
            core = cluster = ClusterCore(
                index=worker_index,
                workers=workers,
                incarnation=secrets.randbelow(INCARNATION_LIMIT),
                verifier=verifier,
                limits=config.limits,
            )
        else:
            core = WorkerCore(verifier=verifier, limits=config.limits)
        server = cls(config, core, certificates)
        server._serving = serving
        if cluster is not None and worker_index is not None:
            server._join_cluster(config, cluster, worker_index)
        server._listener = await WebTransportListener.listen(
            host or config.server.host,
            config.server.quic_port if port is None else port,
            server_configuration(serving.cert_path, serving.key_path),
            server,
            sock=sock,
            worker_index=worker_index,
        )
        server.port = server._listener.port
        if certificates.rotates:
            server._watcher = asyncio.create_task(server._watch_certificates())
        log.info("listening on UDP port %d", server.port)
        return server

    def _join_cluster(self, config: Config, cluster: ClusterCore, index: int) -> None:
        """Opens this worker's rings, reads its peers', and says Hello (docs/ARCHITECTURE.md, Cluster)."""
        link = self._link = ClusterLink(
            config.server.data_dir,
            index,
            cluster.workers,
            config.limits.max_frame_payload_bytes,
            self._ring_item,
        )
        self._cluster = cluster
        link.start()
        self._run(cluster.start(now_us()))
        self._ticker = asyncio.create_task(self._tick(cluster))
        log.info(
            "worker %d of %d: incarnation %06x, reading %d peers",
            index,
            cluster.workers,
            cluster.incarnation,
            link.attached,
            extra={"worker": index},
        )

    async def _tick(self, cluster: ClusterCore) -> None:
        while True:
            await asyncio.sleep(CLUSTER_TICK_S)
            try:
                self._run(cluster.tick(now_us()))
            except Exception:
                log.exception("cluster tick failed")

    def _ring_item(self, peer: int, kind: RecordKind, item: Any, cursor: RingCursor) -> None:
        """One record (or gap) of a peer's ring, from the ring reader; a media view is consumed here."""
        cluster = self._cluster
        if cluster is None:
            return
        try:
            if type(item) is Gap:
                log.warning(
                    "lost %d records of worker %d's %s ring (%s)",
                    item.length,
                    peer,
                    kind.name.lower(),
                    item.reason.value,
                    extra={"worker": peer},
                )
                if kind is RecordKind.MEDIA:
                    self._run(cluster.media_gap(peer, now_us()))
                else:
                    self._run(cluster.control_gap(peer))
            elif kind is RecordKind.MEDIA:
                self._run(cluster.media_record(item.payload))
                if not cursor.intact(item):
                    log.warning("a media record of worker %d was overwritten while sent", peer)
            else:
                self._run(cluster.control_record(peer, decode_control(item.payload), now_us()))
        except RecordError as exc:
            self.ring_errors += 1
            log.warning("skipped a bad record of worker %d: %s", peer, exc, extra={"worker": peer})
        except Exception:
            self.ring_errors += 1
            log.exception("a ring record failed", extra={"worker": peer})

    @property
    def oversight(self) -> Oversight:
        """The meetings' removals, ends and join/leave journal (the admin channel's, `workers/admin.py`)."""
        return self._core.oversight

    def run_host_action(self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str) -> None:
        """A host action from the admin channel, carried out now; `RequestRefusedError`."""
        self._run(self._core.host_action(meeting_id, kind, participant_id, now_us()))

    def live_meetings(self) -> list[dict[str, Any]]:
        return self._core.snapshot()

    def dump(self) -> dict[str, Any]:
        state = self._core.dump()
        if self._link is not None:
            state["ring_lag"] = self._link.lag()
        state["connections"] = len(self._listener.connections) if self._listener is not None else 0
        state["certificate_sha256"] = self._serving.sha256.hex() if self._serving is not None else None
        return state

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._listener is not None:
            self._listener.close(0, _SHUTDOWN_REASON)
            self._listener = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def reload_certificate(self) -> bool:
        """Serves the store's newest certificate to new connections if it changed; True when it did."""
        serving = self._certificates.current()
        if self._listener is None or (self._serving is not None and serving.sha256 == self._serving.sha256):
            return False
        self._listener.load_certificate(serving.cert_path, serving.key_path)
        self._serving = serving
        log.info("serving certificate %s", serving.sha256.hex()[:16])
        return True

    async def _watch_certificates(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK_S)
            try:
                self.reload_certificate()
            except Exception:
                log.exception("certificate reload failed; keeping the current one")

    # --- SessionHandler ----------------------------------------------------------------------------

    def session_opened(self, session: ServerSession) -> None:
        self._peers[session.id] = _Peer(session)
        log.info("session opened", extra={"meeting_id": session.meeting_id, "peer": session.id})
        self._guarded(session, lambda: self._core.session_opened(session.id, session.meeting_id, now_us()))

    def stream_data(self, session: ServerSession, stream_id: int, data: bytes, end_stream: bool) -> None:
        peer = self._peers.get(session.id)
        if peer is None:
            return
        try:
            if stream_id & 2:
                self._run(self._core.media_stream_received(session.id, stream_id, data, end_stream, now_us()))
                return
            if peer.signaling is None:
                peer.signaling = stream_id
            if stream_id != peer.signaling:
                return
            self._run(self._core.signaling_received(session.id, data, now_us()))
            if end_stream:
                session.close(0, "signaling stream ended")
        except Exception:
            log.exception("session failed", extra={"meeting_id": session.meeting_id, "peer": session.id})
            self._internal_error(session)

    def stream_reset(self, session: ServerSession, stream_id: int, code: int) -> None:
        peer = self._peers.get(session.id)
        if peer is None:
            return
        if stream_id == peer.signaling:
            session.close(pb.ERROR_CODE_MALFORMED, f"signaling stream reset with code {code}")
            return
        self._guarded(session, lambda: self._core.media_stream_reset(session.id, stream_id, now_us()))

    def datagram_received(self, session: ServerSession, data: bytes) -> None:
        try:
            self._run(self._core.datagram_received(session.id, data, now_us()))
        except Exception:
            log.exception("session failed", extra={"meeting_id": session.meeting_id, "peer": session.id})
            self._internal_error(session)

    def session_closed(self, session: ServerSession, code: int, reason: str) -> None:
        if self._peers.pop(session.id, None) is None:
            return
        log.info(
            "session closed: %s",
            reason or "no reason",
            extra={"meeting_id": session.meeting_id, "peer": session.id, "code": code},
        )
        try:
            self._run(self._core.session_closed(session.id, now_us()))
        except Exception:
            log.exception("core failed on a closed session", extra={"meeting_id": session.meeting_id})

    def _guarded(self, session: ServerSession, call: Callable[[], Sequence[ClusterAction]]) -> None:
        try:
            self._run(call())
        except Exception:
            log.exception("session failed", extra={"meeting_id": session.meeting_id, "peer": session.id})
            self._internal_error(session)

    def _internal_error(self, session: ServerSession) -> None:
        """A bug met this session's input: only this session is closed, the worker goes on."""
        session.close(pb.ERROR_CODE_INTERNAL, "internal error")

    # --- actions -----------------------------------------------------------------------------------

    def _run(self, actions: Sequence[ClusterAction]) -> None:
        peers = self._peers
        for action in actions:
            if type(action) is SendDatagram:
                data = action.data
                for session_id in action.sessions:
                    peer = peers.get(session_id)
                    if peer is not None:
                        peer.session.send_datagram(data)
            elif type(action) is SendVideo:
                self._send_video(action)
            elif type(action) is EndVideoGroup:
                self._end_video_group(action)
            elif type(action) is SendSignaling:
                self._send_signaling(action)
            elif type(action) is CloseSession:
                self._close_session(action)
            elif self._link is not None:
                self._write_ring(self._link, action)

    @staticmethod
    def _write_ring(link: ClusterLink, action: ClusterAction) -> None:
        if type(action) is WriteControl:
            link.write_control(action.data)
        elif type(action) is WriteMedia:
            if len(action.header) + len(action.frame) > link.max_media_record:
                log.warning("a frame of %d bytes is too large for the media ring", len(action.frame))
                return
            link.write_media(action.header + action.frame)

    def _send_signaling(self, action: SendSignaling) -> None:
        peer = self._peers.get(action.session)
        if peer is not None and peer.signaling is not None:
            peer.session.send_stream_data(peer.signaling, action.data)

    def _close_session(self, action: CloseSession) -> None:
        peer = self._peers.get(action.session)
        if peer is not None:
            peer.session.flush()
            peer.session.close(action.code, action.reason)

    def _send_video(self, action: SendVideo) -> None:
        peers = self._peers
        track_id, group, data = action.track_id, action.group, action.data
        for session_id in action.sessions:
            peer = peers.get(session_id)
            if peer is None:
                continue
            out = peer.video.get(track_id)
            if action.starts_group:
                if out is None:
                    out = peer.video[track_id] = _VideoOut()
                else:
                    self._finish_current(peer.session, out)
                out.current = peer.session.open_uni_stream()
                out.group = group
            elif out is None or out.group != group:
                continue
            stream = out.current
            if stream is None:
                continue
            if not peer.session.write(stream, data):
                self._lagging(peer, session_id, track_id, out)
                continue
            unsent = stream.unsent
            if out.draining:
                unsent = out.unsent()
            if unsent > MIN_SEND_BUDGET and unsent > peer.session.send_budget(self._max_queued_ms):
                self._lagging(peer, session_id, track_id, out)

    def _end_video_group(self, action: EndVideoGroup) -> None:
        for session_id in action.sessions:
            peer = self._peers.get(session_id)
            if peer is None:
                continue
            out = peer.video.get(action.track_id)
            if out is not None and out.group == action.group:
                self._finish_current(peer.session, out)

    @staticmethod
    def _finish_current(session: ServerSession, out: _VideoOut) -> None:
        """FIN of the current group's stream; it stays counted while it still has bytes to send."""
        if out.draining:
            out.draining = [stream for stream in out.draining if stream.unsent > 0]
        stream = out.current
        out.current = None
        if stream is not None and session.write(stream, b"", end_stream=True) and stream.unsent > 0:
            out.draining.append(stream)

    def _lagging(self, peer: _Peer, session_id: int, track_id: int, out: _VideoOut) -> None:
        if out.current is not None:
            peer.session.reset(out.current)
        for stream in out.draining:
            peer.session.reset(stream)
        out.current = None
        out.draining = []
        out.group = -1
        log.info(
            "subscriber lagging, video group dropped",
            extra={"meeting_id": peer.meeting_id, "peer": session_id, "track_id": track_id},
        )
        self._run(self._core.subscriber_lagging(session_id, track_id, now_us()))
