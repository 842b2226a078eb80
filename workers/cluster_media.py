"""`MediaRouter`: one worker's share of media routing in a cluster, sans-I/O.

The meeting's owner decides who is in a meeting and who subscribes to what, and replicates that as a
`Catalog` to every worker hosting its participants. With it, this router:

- takes what local publishers send (audio datagrams, one video group per stream), with the checks
  `Session` applies on a single worker (a frame must belong to a video/audio track the session publishes,
  a stream must start with its group's keyframe and hold only that group); bad frames get a non-fatal
  `Error{BAD_FRAME}`, and the one after `limits.malformed_input_tolerance` closes the session;
- sends each frame to the local subscribers, and once into this worker's media ring (`WriteMedia`) when
  some subscriber is on another worker;
- forwards the media records other workers wrote to local subscribers of that (publisher, track), from the
  view into the ring it is handed (consumed before returning, never copied per subscriber);
- gates video like `Track`: a subscriber gets a group only from its keyframe, so a new subscriber, one the
  adapter dropped for lagging, and every receiver of a ring that overran wait for the next group.

Local sessions are named by the adapter's numbers in actions and by cluster session ids in catalogs and
records (`darktower.workers.cluster_records`).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from darktower.core.config import LimitsConfig
from darktower.proto import signaling_pb2 as pb
from darktower.proto.frame import HEADER_SIZE, FrameError, FrameHeader, FrameReader, parse_header
from darktower.workers import messages
from darktower.workers.actions import Action, EndVideoGroup, SendDatagram, SendVideo
from darktower.workers.cluster_records import (
    MEDIA_AUDIO,
    MEDIA_END_GROUP,
    MEDIA_HEADER,
    MEDIA_HEADER_SIZE,
    MEDIA_STARTS_GROUP,
    Catalog,
    ClusterAction,
    RecordError,
    TrackEntry,
    WriteMedia,
    incarnation_of,
    local_of,
    worker_of,
)

log = logging.getLogger(__name__)

_pack_media: Final = MEDIA_HEADER.pack
_unpack_media: Final = MEDIA_HEADER.unpack_from


class Route:
    """One track as this worker sees it: its local subscribers, whether others subscribe elsewhere, and
    which group of the publisher's is being forwarded to which local subscribers."""

    __slots__ = (
        "group",
        "kind",
        "local",
        "meeting_id",
        "publisher",
        "receivers",
        "remote",
        "stream",
        "track_id",
    )

    def __init__(self, meeting_id: str, publisher: int, track_id: int, kind: int) -> None:
        self.meeting_id = meeting_id
        self.publisher = publisher
        self.track_id = track_id
        self.kind = kind
        self.local: tuple[int, ...] = ()
        """Local subscribers (adapter session numbers), in subscription order."""
        self.remote = False
        """Some subscriber is on another worker: frames of a local publisher go into the media ring."""
        self.stream: int | None = None
        self.group = 0
        self.receivers: tuple[int, ...] = ()

    def set_local(self, local: tuple[int, ...]) -> EndVideoGroup | None:
        """New local subscribers; those gone that were receiving the current group have their stream ended."""
        self.local = local
        gone = tuple(s for s in self.receivers if s not in local)
        if not gone:
            return None
        self.receivers = tuple(s for s in self.receivers if s in local)
        return EndVideoGroup(gone, self.track_id, self.group)

    def start_group(self, stream: int, group: int, frame: bytes | memoryview) -> SendVideo | None:
        self.stream = stream
        self.group = group
        receivers = self.receivers = self.local
        if not receivers:
            return None
        return SendVideo(receivers, self.track_id, group, frame, starts_group=True)

    def forward(self, stream: int, frame: bytes | memoryview) -> SendVideo | None:
        if stream != self.stream or not self.receivers:
            return None
        return SendVideo(self.receivers, self.track_id, self.group, frame, starts_group=False)

    def end_group(self, stream: int) -> EndVideoGroup | None:
        if stream != self.stream:
            return None
        self.stream = None
        receivers, self.receivers = self.receivers, ()
        return EndVideoGroup(receivers, self.track_id, self.group) if receivers else None

    def drop_receiver(self, session: int) -> None:
        if session in self.receivers:
            self.receivers = tuple(s for s in self.receivers if s != session)

    def drop_all(self) -> bool:
        """Every receiver waits for the next group (the records of this one were lost); True if any was."""
        dropped = bool(self.receivers)
        self.receivers = ()
        self.stream = None
        return dropped

    def close(self) -> EndVideoGroup | None:
        return self.end_group(self.stream) if self.stream is not None else None


class _Inbound:
    """A local publisher's unidirectional stream: one video group, parsed as it arrives."""

    __slots__ = ("dropped", "group", "reader", "route")

    def __init__(self, max_payload: int) -> None:
        self.reader = FrameReader(max_payload)
        self.route: Route | None = None
        self.group = 0
        self.dropped = False


class _Local:
    """A session whose transport is on this worker."""

    __slots__ = (
        "closed",
        "cluster_id",
        "inbound",
        "malformed",
        "meeting_id",
        "member",
        "published",
        "retired",
        "subscribed",
    )

    def __init__(self, cluster_id: int, meeting_id: str) -> None:
        self.cluster_id = cluster_id
        self.meeting_id = meeting_id
        self.member = False
        """The owner's catalog lists it: it joined, and its media counts."""
        self.published: dict[int, Route] = {}
        self.retired: set[int] = set()
        """Audio tracks it published that the owner's catalog dropped (unpublished, or a host's mute):
        datagrams it sent before it heard are dropped quietly, not counted as malformed."""
        self.subscribed: dict[int, Route] = {}
        self.inbound: dict[int, _Inbound] = {}
        self.malformed = 0
        self.closed = False


class MediaRouter:
    def __init__(self, index: int, incarnation: int, limits: LimitsConfig) -> None:
        self._index = index
        self._incarnation = incarnation
        self._limits = limits
        self._max_payload = limits.max_frame_payload_bytes
        self.catalogs: dict[str, Catalog] = {}
        """The latest catalog of each meeting with participants here: what a restarted owner gets back."""
        self._routes: dict[tuple[int, int], Route] = {}
        self._meeting_routes: dict[str, list[Route]] = {}
        self._sessions: dict[int, _Local] = {}
        self.gaps = 0
        """Ring gaps (overruns, corrupt records) that sent receivers to the next keyframe."""
        self.bad_records = 0

    # --- sessions ------------------------------------------------------------------------------------

    def session_opened(self, local: int, cluster_id: int, meeting_id: str) -> None:
        self._sessions[local] = _Local(cluster_id, meeting_id)

    def session_closed(self, local: int) -> None:
        self._sessions.pop(local, None)

    def _is_local(self, session: int) -> bool:
        return (
            worker_of(session) == self._index
            and incarnation_of(session) == self._incarnation
            and local_of(session) in self._sessions
        )

    # --- catalogs ------------------------------------------------------------------------------------

    def apply_catalog(self, catalog: Catalog) -> list[Action]:
        """The owner's latest view of a meeting: routes follow it; receivers no longer subscribed are ended."""
        meeting_id = catalog.meeting_id
        actions: list[Action] = []
        old = {(r.publisher, r.track_id): r for r in self._meeting_routes.pop(meeting_id, [])}
        self._reset_sessions(catalog)
        routes: list[Route] = []
        for track in catalog.tracks:
            key = (track.publisher, track.track_id)
            route = old.pop(key, None) or Route(meeting_id, track.publisher, track.track_id, track.kind)
            actions += self._update_route(route, track)
            self._routes[key] = route
            routes.append(route)
        for key, route in old.items():
            del self._routes[key]
            end = route.close()
            if end is not None:
                actions.append(end)
        if routes:
            self._meeting_routes[meeting_id] = routes
        if catalog.members:
            self.catalogs[meeting_id] = catalog
        else:
            self.catalogs.pop(meeting_id, None)
        return actions

    def _reset_sessions(self, catalog: Catalog) -> None:
        """Local sessions of the meeting: member or not, publishing and subscribing nothing yet."""
        for state in self._sessions.values():
            if state.meeting_id == catalog.meeting_id:
                state.member = False
                state.retired.update(
                    t for t, route in state.published.items() if route.kind == pb.TRACK_KIND_AUDIO
                )
                state.published.clear()
                state.subscribed.clear()
        for entry in catalog.members:
            if self._is_local(entry.session):
                self._sessions[local_of(entry.session)].member = True

    def _update_route(self, route: Route, track: TrackEntry) -> list[Action]:
        local = tuple(local_of(s) for s in track.subscribers if self._is_local(s))
        end = route.set_local(local)
        route.remote = any(worker_of(s) != self._index for s in track.subscribers)
        if self._is_local(track.publisher):
            self._sessions[local_of(track.publisher)].published[track.track_id] = route
        for session in local:
            self._sessions[session].subscribed[track.track_id] = route
        return [end] if end is not None else []

    # --- local publishers ----------------------------------------------------------------------------

    def datagram_received(self, local: int, data: bytes) -> list[ClusterAction]:
        """One audio frame of a local publisher."""
        state = self._sessions.get(local)
        if state is None or not state.member or state.closed:
            return []
        try:
            header = parse_header(data, 0, self._max_payload)
        except FrameError as exc:
            return self._bad_frame(local, state, str(exc))
        if len(data) != HEADER_SIZE + header.payload_length:
            return self._bad_frame(
                local, state, f"datagram of {len(data)} bytes does not hold exactly one frame"
            )
        route = state.published.get(header.track_id)
        if route is None and header.track_id in state.retired:
            return []
        if route is None or route.kind != pb.TRACK_KIND_AUDIO:
            return self._bad_frame(
                local, state, f"datagram for track {header.track_id}, not an audio track of this session"
            )
        actions: list[ClusterAction] = [SendDatagram(route.local, data)] if route.local else []
        if route.remote:
            actions.append(WriteMedia(_pack_media(state.cluster_id, 0, route.track_id, 0, MEDIA_AUDIO), data))
        return actions

    def media_stream_received(
        self, local: int, stream_id: int, data: bytes, end_stream: bool
    ) -> list[ClusterAction]:
        """Bytes of a local publisher's unidirectional stream, which carries one video group."""
        state = self._sessions.get(local)
        if state is None or not state.member or state.closed:
            return []
        inbound = state.inbound.get(stream_id)
        if inbound is None:
            inbound = state.inbound[stream_id] = _Inbound(self._max_payload)
        if end_stream:
            del state.inbound[stream_id]
        if inbound.dropped:
            return []
        actions: list[ClusterAction] = []
        try:
            for header, frame in inbound.reader.feed(data):
                self._video_frame(state, inbound, stream_id, header, frame, actions)
            if end_stream:
                inbound.reader.close()
        except FrameError as exc:
            inbound.dropped = True
            actions += self._end_group(state, inbound, stream_id)
            return actions + self._bad_frame(local, state, str(exc))
        if end_stream:
            actions += self._end_group(state, inbound, stream_id)
        return actions

    def media_stream_reset(self, local: int, stream_id: int) -> list[ClusterAction]:
        state = self._sessions.get(local)
        if state is None:
            return []
        inbound = state.inbound.pop(stream_id, None)
        if inbound is None or state.closed:
            return []
        return self._end_group(state, inbound, stream_id)

    @staticmethod
    def _video_frame(  # noqa: PLR0917 - one frame in context, on the hot path
        state: _Local,
        inbound: _Inbound,
        stream_id: int,
        header: FrameHeader,
        frame: bytes,
        actions: list[ClusterAction],
    ) -> None:
        route = inbound.route
        if route is None:
            route = state.published.get(header.track_id)
            if route is None or route.kind != pb.TRACK_KIND_VIDEO:
                raise FrameError(f"stream for track {header.track_id}, not a video track of this session")
            if not header.keyframe or header.object_seq != 0:
                raise FrameError("a video stream must start with its group's keyframe (object_seq 0)")
            inbound.route = route
            inbound.group = header.group
            send = route.start_group(stream_id, header.group, frame)
            flags = MEDIA_STARTS_GROUP
        elif header.track_id != route.track_id or header.group != inbound.group:
            raise FrameError("a video stream carries the frames of one track's group only")
        else:
            send = route.forward(stream_id, frame)
            flags = 0
        if send is not None:
            actions.append(send)
        if route.remote:
            actions.append(
                WriteMedia(
                    _pack_media(state.cluster_id, stream_id, route.track_id, inbound.group, flags), frame
                )
            )

    @staticmethod
    def _end_group(state: _Local, inbound: _Inbound, stream_id: int) -> list[ClusterAction]:
        route = inbound.route
        if route is None:
            return []
        actions: list[ClusterAction] = []
        end = route.end_group(stream_id)
        if end is not None:
            actions.append(end)
        if route.remote:
            header = _pack_media(state.cluster_id, stream_id, route.track_id, inbound.group, MEDIA_END_GROUP)
            actions.append(WriteMedia(header, b""))
        return actions

    def _bad_frame(self, local: int, state: _Local, message: str) -> list[ClusterAction]:
        state.malformed += 1
        if state.malformed > self._limits.malformed_input_tolerance:
            state.closed = True
            state.inbound.clear()
            return list(
                messages.close(local, 0, pb.ERROR_CODE_BAD_FRAME, f"{message} (too much malformed input)")
            )
        log.info("bad frame: %s", message, extra={"meeting_id": state.meeting_id, "peer": local})
        return [messages.error(local, 0, pb.ERROR_CODE_BAD_FRAME, message, fatal=False)]

    # --- other workers' media ------------------------------------------------------------------------

    def media_record(self, record: memoryview) -> list[Action]:
        """A record from another worker's media ring; the view is consumed before this returns."""
        if len(record) < MEDIA_HEADER_SIZE:
            self.bad_records += 1
            raise RecordError(f"media record of {len(record)} bytes is shorter than its header")
        publisher, stream, track_id, group, flags = _unpack_media(record)
        route = self._routes.get((publisher, track_id))
        if route is None:
            return []
        frame = record[MEDIA_HEADER_SIZE:]
        if flags & MEDIA_AUDIO:
            return [SendDatagram(route.local, frame)] if route.local else []
        if flags & MEDIA_END_GROUP:
            end = route.end_group(stream)
            return [end] if end is not None else []
        if flags & MEDIA_STARTS_GROUP:
            send = route.start_group(stream, group, frame)
        else:
            send = route.forward(stream, frame)
        return [send] if send is not None else []

    def media_gap(self, worker: int) -> list[tuple[str, int, int]]:
        """Records of `worker`'s media ring were lost: each of its video tracks' local receivers waits for
        the next keyframe. Returns (meeting id, a local subscriber, track id) per track to ask a keyframe for."""
        self.gaps += 1
        wanted: list[tuple[str, int, int]] = []
        for route in self._routes.values():
            if worker_of(route.publisher) == worker and route.kind == pb.TRACK_KIND_VIDEO and route.local:
                route.drop_all()
                wanted.append((route.meeting_id, route.local[0], route.track_id))
        return wanted

    def subscriber_lagging(self, local: int, track_id: int) -> str | None:
        """The adapter dropped the local subscriber's group: it waits for the next one. Its meeting id, to
        ask the owner for a keyframe (None when it does not subscribe to the track)."""
        state = self._sessions.get(local)
        route = state.subscribed.get(track_id) if state is not None else None
        if state is None or route is None:
            return None
        route.drop_receiver(local)
        return state.meeting_id

    def dump(self) -> dict[str, Any]:
        return {"routes": len(self._routes), "ring_gaps": self.gaps, "bad_records": self.bad_records}
