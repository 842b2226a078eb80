"""One meeting participant over WebTransport: signaling, publishing, subscribing, receiving, reconnecting.

`MeetingClient` joins through the control API, opens the media session with the certificate hashes it was
given, and speaks signaling on one bidirectional stream: each request gets a fresh request id and a future
that the reply (or an `Error`, raised as `RequestRefusedError`) resolves. Roster and tracks follow the
server's events. Published tracks are driven by media sources (synthetic by default): audio goes out one
frame per datagram, each video group on its own unidirectional stream, ended when the group ends. Received
frames are parsed, checked byte for byte against the synthetic format and counted in `stats`.

With `e2ee=True` the client joins announcing end-to-end encryption and runs a `KeyManager` (docs/E2EE.md)
off the roster events and key messages: every payload it sends is SFrame ciphertext, every payload it
receives is opened first (refused frames are dropped and counted by the manager), and video that opens
again after refused frames brings a keyframe request for its track. The manager, and so the identity key,
outlives sessions.

When the session drops without `leave()`, the client joins again with a fresh token after an exponential
back-off with jitter, publishes its tracks again (new track ids, new sources starting at a keyframe) and
subscribes again to what it had subscribed to that still exists (to everything, with `auto_subscribe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from darktower.client.api import ControlApi, JoinInfo
from darktower.client.backoff import ReconnectPolicy
from darktower.client.e2ee import KeyAction, KeyManager, Refused
from darktower.client.errors import (
    ApiError,
    ClientError,
    ConnectionLostError,
    MeetingNotFoundError,
    RequestRefusedError,
)
from darktower.client.media import MediaKind, MediaSource, source_for
from darktower.client.receiver import FrameCallback, MediaReceiver
from darktower.client.roster import KINDS, Peer, RemoteTrack, Roster
from darktower.client.stats import ReceiveStats
from darktower.client.transport import (
    DatagramReceived,
    SessionClosed,
    StreamData,
    TransportError,
    WebTransportSession,
)
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import MAX_U32
from darktower.proto.signaling import (
    DelimitedReader,
    SignalingError,
    encode_delimited,
    parse_server_message,
)

log = logging.getLogger(__name__)

_DEFAULT_CODECS: Final[dict[MediaKind, tuple[str, str]]] = {
    "audio": ("opus", "microphone"),
    "video": ("vp8", "camera"),
}
_MAX_SERVER_MESSAGE_BYTES: Final = 4 * 1024 * 1024
_KEY_RESENDS: Final = 10
_KEY_RESEND_DELAY_S: Final = 0.5
"""A key message refused as rate-limited goes again this much later, at most `_KEY_RESENDS` times."""
_LEAVE_TIMEOUT_S: Final = 2.0
"""How long leaving waits for the server's acknowledgement and the session's end."""
_NO_RETRY_CODES: Final = frozenset({"replaced", "removed", "ended", "e2ee_required"})
"""Session-ending errors that joining again cannot undo: another session took over, a host removed this
participant or ended the meeting, or the meeting needs encryption this client does not do."""

SourceFactory = Callable[[str, int, int], MediaSource]
"""(participant id, track id, start time µs) -> the source of a (re)published track."""


def wall_clock_us() -> int:
    """Capture and receive times are wall-clock µs, so latency compares clocks across processes."""
    return time.time_ns() // 1000


def error_code_name(code: int) -> str:
    """`ErrorCode` value -> `unknown_track`-style code; unknown values keep their number."""
    try:
        return pb.ErrorCode.Name(code).removeprefix("ERROR_CODE_").lower()
    except ValueError:
        return f"error_{code}"


@dataclass(slots=True)
class _Publication:
    """A track this client publishes; it outlives sessions, its server-side track id does not."""

    kind: MediaKind
    codec: str
    label: str
    make_source: SourceFactory
    source: MediaSource | None = None
    track_id: int | None = None
    stream_id: int | None = None
    """The unidirectional stream of the video group being sent, if one is open."""


@dataclass(slots=True)
class _Connection:
    """One WebTransport session and what is tied to it."""

    session: WebTransportSession
    signaling_stream: int
    media: MediaReceiver
    signaling: DelimitedReader = field(default_factory=lambda: DelimitedReader(_MAX_SERVER_MESSAGE_BYTES))
    pending: dict[int, asyncio.Future[pb.ServerMessage]] = field(default_factory=dict)
    fatal: RequestRefusedError | None = None
    receiver: asyncio.Task[None] | None = None
    participant_hint: str = ""
    """The participant id the control plane granted, until the worker's `JoinResponse` names it."""


class MeetingClient:
    """One participant of one meeting. Not thread-safe; use from one event loop."""

    def __init__(
        self,
        api: ControlApi,
        meeting_id: str,
        display_name: str,
        *,
        auto_subscribe: bool = False,
        can_publish: bool = True,
        can_subscribe: bool = True,
        reconnect: ReconnectPolicy | None = None,
        on_frame: FrameCallback | None = None,
        verify_media: bool = True,
        clock: Callable[[], int] = wall_clock_us,
        connect_timeout: float = 5.0,
        request_timeout: float = 5.0,
        ca_file: str | None = None,
        rng: random.Random | None = None,
        e2ee: bool = False,
    ) -> None:
        self.meeting_id = meeting_id
        self.display_name = display_name
        self.auto_subscribe = auto_subscribe
        self.state = Roster()
        self.stats = ReceiveStats()
        self.sent: dict[MediaKind, int] = {"audio": 0, "video": 0}
        self.reconnects = 0
        self.failure: ClientError | None = None
        """Why the client gave up on the meeting (set when it stops reconnecting)."""
        self.keys = KeyManager() if e2ee else None
        """The end-to-end key manager, with `e2ee`."""
        self._api = api
        self._can_publish = can_publish
        self._can_subscribe = can_subscribe
        self._policy = reconnect if reconnect is not None else ReconnectPolicy()
        self._on_frame = on_frame
        self._verify = verify_media
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._ca_file = ca_file
        self._rng = rng if rng is not None else random.SystemRandom()
        self._participant_id: str | None = None
        self._publications: list[_Publication] = []
        self._conn: _Connection | None = None
        self._next_request_id = 1
        self._leaving = False
        self._reconnecting = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._pacer: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self.muted_by: str | None = None
        """The host who last muted this client (its audio publications were dropped); None if never."""

    # --- public API -------------------------------------------------------------------------------------

    @property
    def participant_id(self) -> str:
        if self._participant_id is None:
            raise ConnectionLostError("not_joined", "the client has not joined yet")
        return self._participant_id

    @property
    def roster(self) -> dict[str, Peer]:
        """Everyone else in the meeting, by participant id."""
        return self.state.peers

    @property
    def tracks(self) -> dict[int, RemoteTrack]:
        """Every track in the meeting, this participant's own included."""
        return self.state.tracks

    @property
    def subscriptions(self) -> set[int]:
        return self.state.subscriptions

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._participant_id is not None

    async def join(self) -> None:
        """Joins the meeting (and, with `auto_subscribe`, subscribes to every track already there)."""
        self.stats.joined(self._clock())
        await self._connect()
        if self.auto_subscribe:
            await asyncio.gather(*(self.subscribe(t) for t in self.state.others_tracks()))

    async def publish(
        self,
        kind: MediaKind,
        codec: str | None = None,
        label: str | None = None,
        *,
        source: SourceFactory | None = None,
    ) -> int:
        """Publishes a track and starts sending its media (synthetic unless `source` is given)."""
        default_codec, default_label = _DEFAULT_CODECS[kind]
        publication = _Publication(
            kind=kind,
            codec=codec or default_codec,
            label=label or default_label,
            make_source=source or (lambda pid, track, start: source_for(kind, pid, track, start)),
        )
        track_id = await self._publish(publication)
        self._publications.append(publication)
        if self._pacer is None:
            self._pacer = asyncio.create_task(self._pace())
        return track_id

    async def unpublish(self, track_id: int) -> None:
        publication = next((p for p in self._publications if p.track_id == track_id), None)
        if publication is None:
            raise RequestRefusedError("unknown_track", f"track {track_id} is not published by this client")
        self._publications.remove(publication)
        self._end_group(publication)
        await self._request(pb.ClientMessage(unpublish=pb.UnpublishTrack(track_id=track_id)))
        self.tracks.pop(track_id, None)

    async def subscribe(self, track_id: int) -> None:
        await self._request(pb.ClientMessage(subscribe=pb.Subscribe(track_id=track_id)))
        self.subscriptions.add(track_id)
        self._notify()

    async def unsubscribe(self, track_id: int) -> None:
        self.subscriptions.discard(track_id)
        await self._request(pb.ClientMessage(unsubscribe=pb.Unsubscribe(track_id=track_id)))

    async def request_keyframe(self, track_id: int) -> None:
        await self._request(pb.ClientMessage(request_keyframe=pb.RequestKeyframe(track_id=track_id)))

    async def ping(self) -> float:
        """Round-trip time of one signaling request, in milliseconds."""
        sent = self._clock()
        await self._request(pb.ClientMessage(ping=pb.Ping(client_time_us=sent)))
        return (self._clock() - sent) / 1000

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Returns once `predicate()` holds, re-checked after every server event, received frame and
        connection change; bound it with `asyncio.timeout`."""
        loop = asyncio.get_running_loop()
        while not predicate():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            await waiter

    async def leave(self) -> None:
        """Leaves the meeting and closes the session; the client cannot be used afterwards."""
        self._leaving = True
        tasks = [t for t in (self._pacer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn = self._conn
        if conn is None:
            return
        for publication in self._publications:
            self._end_group(publication)
        with contextlib.suppress(ClientError, TimeoutError):
            async with asyncio.timeout(_LEAVE_TIMEOUT_S):
                await self._request(pb.ClientMessage(leave=pb.Leave()))
        await conn.session.close(0, "leave")
        if conn.receiver is not None:
            _, pending = await asyncio.wait({conn.receiver}, timeout=_LEAVE_TIMEOUT_S)
            for task in pending:
                task.cancel()
        self._lost(conn, None)

    # --- connection -------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        info = await self._api.join(
            self.meeting_id, self.display_name, publish=self._can_publish, subscribe=self._can_subscribe
        )
        conn = await self._open(info)
        conn.participant_hint = info.participant_id
        try:
            join = pb.Join(token=info.token, e2ee=self.keys is not None)
            await self._request(pb.ClientMessage(join=join), conn=conn)
        except ClientError:
            await conn.session.close(0, "join failed")
            raise
        log.info("joined", extra=self._ids())
        self._notify()

    def _joined(self, conn: _Connection, joined: pb.JoinResponse) -> None:
        """Applies a `JoinResponse` as it is read, before any message after it: roster events that follow
        it in the same read (another participant joining at the same moment) build on it, never under it."""
        self._participant_id = joined.participant_id or conn.participant_hint
        self.state.joined(self._participant_id, joined)
        conn.media.max_payload = joined.max_frame_payload_bytes or MAX_U32
        if self.keys is not None:
            roster = [(p.participant_id, p.e2ee) for p in joined.roster]
            self._run_key_actions(self.keys.joined(self._participant_id, roster, self._clock()))

    async def _open(self, info: JoinInfo) -> _Connection:
        try:
            session = await WebTransportSession.connect(
                info.webtransport_url,
                certificate_hashes=info.certificate_hashes,
                ca_file=self._ca_file,
                timeout=self._connect_timeout,
            )
        except TransportError as exc:
            raise ConnectionLostError("connect_failed", f"{info.webtransport_url}: {exc}") from exc
        conn = _Connection(
            session=session,
            signaling_stream=session.create_bidirectional_stream(),
            media=MediaReceiver(
                self.state.tracks,
                self.stats,
                verify_media=self._verify,
                on_frame=self._on_frame,
                opener=None if self.keys is None else self._open_frame,
            ),
        )
        self._conn = conn
        conn.receiver = asyncio.create_task(self._receive(conn))
        return conn

    def _lost(self, conn: _Connection, error: ClientError | None) -> None:
        """The session of `conn` is over: fail its requests and, unless leaving, start reconnecting."""
        if conn is not self._conn:
            return
        self._conn = None
        reason = conn.fatal or error or ConnectionLostError("connection_lost", "the media session ended")
        for future in conn.pending.values():
            if not future.done():
                future.set_exception(reason)
        conn.pending.clear()
        for publication in self._publications:
            publication.track_id = None
            publication.stream_id = None
        self._notify()
        if self._leaving or self._reconnecting or self._participant_id is None:
            return
        log.warning("media session lost: %s", reason, extra=self._ids())
        if reason.code in _NO_RETRY_CODES:
            self.failure = reason
            return
        self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        self._reconnecting = True
        try:
            for attempt in range(self._policy.max_attempts):
                await asyncio.sleep(self._policy.delay(attempt, self._rng))
                try:
                    await self._connect()
                    await self._restore()
                except ClientError as exc:
                    await self._drop()
                    if _permanent(exc):
                        self.failure = exc
                        return
                    log.warning("reconnect attempt %d failed: %s", attempt + 1, exc, extra=self._ids())
                    continue
                if self._conn is not None:
                    self.reconnects += 1
                    log.info("reconnected", extra=self._ids())
                    return
            self.failure = ConnectionLostError(
                "reconnect_failed", f"gave up after {self._policy.max_attempts} attempts"
            )
        finally:
            self._reconnecting = False
            self._notify()

    async def _drop(self) -> None:
        """Closes the current session, if any, without leaving (a failed reconnect attempt)."""
        conn = self._conn
        if conn is not None:
            await conn.session.close(0, "reconnect attempt failed")
            self._lost(conn, None)

    async def _restore(self) -> None:
        """After a new session: publish again, subscribe again."""
        for publication in self._publications:
            await self._publish(publication)
        wanted = set(self.subscriptions)
        if self.auto_subscribe:
            wanted |= set(self.state.others_tracks())
        self.subscriptions.clear()
        await asyncio.gather(*(self.subscribe(t) for t in sorted(wanted)))

    async def _publish(self, publication: _Publication) -> int:
        reply = await self._request(
            pb.ClientMessage(
                publish=pb.PublishTrack(
                    kind=KINDS[publication.kind], codec=publication.codec, label=publication.label
                )
            )
        )
        track = RemoteTrack.from_proto(reply.publish_response.track)
        self.state.add_track(track)
        publication.track_id = track.track_id
        publication.stream_id = None
        publication.source = publication.make_source(self.participant_id, track.track_id, self._clock())
        return track.track_id

    # --- signaling --------------------------------------------------------------------------------------

    def _send_request(self, conn: _Connection, message: pb.ClientMessage) -> asyncio.Future[pb.ServerMessage]:
        request_id = self._next_request_id
        self._next_request_id = request_id % MAX_U32 + 1
        message.request_id = request_id
        future: asyncio.Future[pb.ServerMessage] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = future
        try:
            conn.session.send_stream_data(conn.signaling_stream, encode_delimited(message))
        except TransportError as exc:
            del conn.pending[request_id]
            raise ConnectionLostError("connection_lost", str(exc)) from exc
        return future

    async def _request(
        self, message: pb.ClientMessage, *, conn: _Connection | None = None
    ) -> pb.ServerMessage:
        conn = conn or self._conn
        if conn is None:
            raise ConnectionLostError("not_connected", "no media session is open")
        future = self._send_request(conn, message)
        try:
            async with asyncio.timeout(self._request_timeout):
                return await future
        except TimeoutError:
            raise ClientError("timeout", f"no reply to {message.WhichOneof('body')}") from None
        finally:
            conn.pending.pop(message.request_id, None)

    def _on_server_message(self, conn: _Connection, message: pb.ServerMessage) -> None:
        error = None
        if message.WhichOneof("body") == "error":
            error = RequestRefusedError(
                error_code_name(message.error.code), message.error.message, fatal=message.error.fatal
            )
            if error.fatal:
                conn.fatal = error
        if message.request_id:
            future = conn.pending.pop(message.request_id, None)
            if future is not None and not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    if message.WhichOneof("body") == "join_response":
                        self._joined(conn, message.join_response)
                    future.set_result(message)
            return
        if error is not None:
            log.warning("server error: %s", error, extra=self._ids())
        else:
            self._on_event(message)
        self._notify()

    def _on_event(self, message: pb.ServerMessage) -> None:
        """A server-initiated message: roster and track changes, keyframe requests, notices."""
        body = message.WhichOneof("body")
        if body == "keyframe_request":
            for publication in self._publications:
                if publication.track_id == message.keyframe_request.track_id and publication.source:
                    publication.source.request_keyframe()
        elif body == "notice":
            log.info("server notice: %s", message.notice.message, extra=self._ids())
        elif body == "muted":
            self._muted(message.muted)
        elif body == "key_message_received" and self.keys is not None:
            received = message.key_message_received
            self._run_key_actions(
                self.keys.receive(received.from_participant_id, received.payload, self._clock())
            )
        else:
            if self.keys is not None and body == "participant_joined":
                joined = message.participant_joined.participant
                self._run_key_actions(
                    self.keys.participant_joined(joined.participant_id, joined.e2ee, self._clock())
                )
            elif self.keys is not None and body == "participant_left":
                left = message.participant_left.participant_id
                self._run_key_actions(self.keys.participant_left(left, self._clock()))
            if (track := self.state.apply(message)) is not None and self.auto_subscribe:
                self._spawn(self._auto_subscribe(track.track_id))

    def _muted(self, muted: pb.Muted) -> None:
        """A host muted this client: the server unpublished those tracks, so stop sending them for good
        (a reconnect does not publish them again; publishing audio anew is the way to unmute)."""
        self.muted_by = muted.by_participant_id
        for publication in [p for p in self._publications if p.track_id in muted.track_ids]:
            self._publications.remove(publication)
            self._end_group(publication)
            if publication.track_id is not None:
                self.tracks.pop(publication.track_id, None)
        log.info("muted by %s", muted.by_participant_id, extra=self._ids())

    async def _auto_subscribe(self, track_id: int) -> None:
        try:
            await self.subscribe(track_id)
        except ClientError as exc:
            log.warning("auto-subscribe to track %d failed: %s", track_id, exc, extra=self._ids())

    # --- media ------------------------------------------------------------------------------------------

    async def _receive(self, conn: _Connection) -> None:
        """Reads the session until it ends."""
        try:
            while True:
                event = await conn.session.next_event()
                if isinstance(event, SessionClosed):
                    closed = ConnectionLostError(
                        error_code_name(event.code) if event.code else "connection_lost",
                        event.reason or "the media session ended",
                    )
                    self._lost(conn, closed)
                    return
                now_us = self._clock()
                if isinstance(event, DatagramReceived):
                    if conn.media.datagram(event.data, now_us):
                        self._notify()
                elif event.stream_id == conn.signaling_stream:
                    await self._on_signaling(conn, event)
                elif event.unidirectional and event.reset:
                    conn.media.stream_reset(event.stream_id)
                elif event.unidirectional and conn.media.stream_data(
                    event.stream_id, event.data, event.end_stream, now_us
                ):
                    self._notify()
        except Exception as exc:
            log.exception("receive loop failed", extra=self._ids())
            await conn.session.close(pb.ERROR_CODE_INTERNAL, "client receive loop failed")
            self._lost(conn, ConnectionLostError("internal", repr(exc)))

    async def _on_signaling(self, conn: _Connection, event: StreamData) -> None:
        try:
            for body in conn.signaling.feed(event.data):
                self._on_server_message(conn, parse_server_message(body))
        except SignalingError as exc:
            log.warning("malformed signaling from the server: %s", exc, extra=self._ids())
            await conn.session.close(pb.ERROR_CODE_MALFORMED, "malformed signaling")
            return
        if event.end_stream:
            await conn.session.close(0, "signaling stream ended")

    async def _pace(self) -> None:
        """Sends what every published track's source has due, then sleeps until the next frame is due."""
        while True:
            now_us = self._clock()
            next_due = now_us + 20_000
            for publication in list(self._publications):
                source = publication.source
                if source is None:
                    continue
                for frame in source.due(now_us):
                    self._send_frame(publication, frame.data, frame.keyframe, frame.last_in_group)
                next_due = min(next_due, source.next_due_us)
            await asyncio.sleep(max(0, next_due - self._clock()) / 1_000_000)

    def _send_frame(
        self, publication: _Publication, data: bytes, keyframe: bool, last_in_group: bool
    ) -> None:
        conn = self._conn
        if conn is None or publication.track_id is None:
            return
        if self.keys is not None:
            data = self.keys.seal_frame(data, self._clock())
        try:
            if publication.kind == "audio":
                conn.session.send_datagram(data)
            else:
                if keyframe:
                    self._end_group(publication)
                    publication.stream_id = conn.session.create_unidirectional_stream()
                if publication.stream_id is None:
                    return
                conn.session.send_stream_data(publication.stream_id, data, end_stream=last_in_group)
                if last_in_group:
                    publication.stream_id = None
        except TransportError as exc:
            log.debug("media not sent: %s", exc, extra=self._ids())
            return
        self.sent[publication.kind] += 1

    def _end_group(self, publication: _Publication) -> None:
        """FIN of the video group's stream, so the server knows the group is complete."""
        conn, stream_id = self._conn, publication.stream_id
        publication.stream_id = None
        if conn is not None and stream_id is not None:
            with contextlib.suppress(TransportError):
                conn.session.send_stream_data(stream_id, b"", end_stream=True)

    # --- end-to-end encryption --------------------------------------------------------------------------

    def _open_frame(self, track: RemoteTrack, frame: bytes, now_us: int) -> bytes | None:
        """Decrypts a frame; video that opens again after refused frames needs a keyframe to decode."""
        assert self.keys is not None
        opened = self.keys.open_frame(track.participant_id, frame, now_us, video=track.kind == "video")
        if isinstance(opened, Refused):
            return None
        if opened.resumed:
            self._spawn(self._request_keyframe(track.track_id))
        return opened.plaintext

    def _run_key_actions(self, actions: list[KeyAction]) -> None:
        """Key messages go out now, in order (one signaling stream keeps it)."""
        for action in actions:
            if not self._send_key_message(
                pb.KeyMessage(to_participant_ids=action.to, payload=action.payload)
            ):
                return

    def _send_key_message(self, message: pb.KeyMessage, attempt: int = 0) -> bool:
        """Sends one key message; one the server refuses as rate-limited goes again after a pause."""
        conn = self._conn
        if conn is None:
            return False
        try:
            reply = self._send_request(conn, pb.ClientMessage(key_message=message))
        except ClientError as exc:
            log.warning("key message not sent: %s", exc, extra=self._ids())
            return False

        def done(reply: asyncio.Future[pb.ServerMessage]) -> None:
            if reply.cancelled() or (error := reply.exception()) is None:
                return
            if isinstance(error, ClientError) and error.code == "rate_limited" and attempt < _KEY_RESENDS:
                asyncio.get_running_loop().call_later(
                    _KEY_RESEND_DELAY_S, self._send_key_message, message, attempt + 1
                )
                return
            log.warning("key message refused: %s", error, extra=self._ids())

        reply.add_done_callback(done)
        return True

    async def _request_keyframe(self, track_id: int) -> None:
        if track_id in self.subscriptions:
            with contextlib.suppress(ClientError):
                await self.request_keyframe(track_id)

    # --- plumbing ---------------------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ids(self) -> dict[str, str | None]:
        return {"meeting_id": self.meeting_id, "participant_id": self._participant_id}


def _permanent(error: ClientError) -> bool:
    """Errors that another attempt cannot fix: the meeting is gone, or the API refuses this client."""
    if isinstance(error, MeetingNotFoundError) or error.code in _NO_RETRY_CODES:
        return True
    return (
        isinstance(error, ApiError)
        and error.status is not None
        and 400 <= error.status < 500
        and error.status not in {408, 429}
    )
