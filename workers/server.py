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
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

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
    Action,
    CloseSession,
    EndVideoGroup,
    SendDatagram,
    SendSignaling,
    SendVideo,
)
from darktower.workers.core import WorkerCore
from darktower.workers.webtransport import (
    MIN_SEND_BUDGET,
    OutgoingStream,
    ServerSession,
    WebTransportListener,
    server_configuration,
)

log = logging.getLogger(__name__)

CERTIFICATE_CHECK_S: Final = 60.0
_SHUTDOWN_REASON: Final = "server shutting down"


def now_us() -> int:
    """Wall-clock µs: the core compares it with token expiry and echoes it in Pong."""
    return time.time_ns() // 1000


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

    def __init__(self, config: Config, core: WorkerCore, certificates: _Certificates) -> None:
        self._core = core
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
        server = cls(config, WorkerCore(verifier=verifier, limits=config.limits), certificates)
        server._serving = serving
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

    def dump(self) -> dict[str, Any]:
        state = self._core.dump()
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

    def _guarded(self, session: ServerSession, call: Callable[[], list[Action]]) -> None:
        try:
            self._run(call())
        except Exception:
            log.exception("session failed", extra={"meeting_id": session.meeting_id, "peer": session.id})
            self._internal_error(session)

    def _internal_error(self, session: ServerSession) -> None:
        """A bug met this session's input: only this session is closed, the worker goes on."""
        session.close(pb.ERROR_CODE_INTERNAL, "internal error")

    # --- actions -----------------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
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
