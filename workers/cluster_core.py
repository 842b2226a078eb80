"""`ClusterCore`: the sans-I/O core of one worker among N, where a meeting's participants may be anywhere.

Same inputs as `WorkerCore` for the worker's own sessions, plus the records other workers wrote; outputs are
`WorkerCore`'s actions (addressed to this worker's sessions) plus records to write into this worker's rings
(`WriteControl`, `WriteMedia`). docs/ARCHITECTURE.md ("Cluster") has the design; in short:

- Owner. For meetings this worker owns (`owner_index`), it runs the ordinary `Session` and `Meeting` for
  every participant, wherever connected, under cluster session ids. Their signaling actions for sessions on
  other workers become `Deliver`/`Close` records. After each input it sends a meeting's changed `Catalog` to
  the workers hosting (or until then hosting) its participants, before that input's replies.
- Edge. For its own sessions it forwards signaling, lagging reports and closes to the owner (itself
  included), carries out what the owner sends back, and routes media through `MediaRouter`.
- Recovery. `start` announces this incarnation (`Hello`). On a peer's `Hello`, the sessions of its earlier
  incarnations leave the meetings owned here; for meetings the peer owns, local clients are told the peer's
  participants left and this worker's participants, tracks and subscriptions are re-registered (`Rejoin`);
  the restarted owner rebuilds the meeting from those, keeping track ids.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from darktower.core.config import LimitsConfig
from darktower.core.tokens import JoinGrant, Role, TokenVerifier
from darktower.proto import signaling_pb2 as pb
from darktower.workers import messages
from darktower.workers.actions import Action, CloseSession, SendSignaling
from darktower.workers.admin_state import Oversight
from darktower.workers.cluster_media import MediaRouter
from darktower.workers.cluster_records import (
    BROADCAST,
    Catalog,
    Close,
    Closed,
    ClusterAction,
    ControlRecord,
    Deliver,
    Hello,
    Lagging,
    MemberEntry,
    Rejoin,
    Signal,
    TrackEntry,
    WriteControl,
    cluster_session,
    encode_control,
    incarnation_of,
    local_of,
    worker_of,
)
from darktower.workers.errors import WorkerError
from darktower.workers.meeting import ROLE_OF, Meeting, Member, Track, control_plane_action
from darktower.workers.session import Session
from darktower.workers.shard import owner_index

log = logging.getLogger(__name__)


class _Published:
    """What the owner last told the workers about a meeting."""

    __slots__ = ("catalog", "hosts")

    def __init__(self, catalog: Catalog, hosts: frozenset[int]) -> None:
        self.catalog = catalog
        self.hosts = hosts


class ClusterCore:
    def __init__(
        self, *, index: int, workers: int, incarnation: int, verifier: TokenVerifier, limits: LimitsConfig
    ) -> None:
        self.index = index
        self.workers = workers
        self.incarnation = incarnation
        self._verifier = verifier
        self._limits = limits
        self.media = MediaRouter(index, incarnation, limits)
        self._local: dict[int, str] = {}
        """This worker's sessions (adapter numbers) and the meeting each is for."""
        self._sessions: dict[int, Session] = {}
        """Owner side: the sessions of owned meetings, by cluster session id."""
        self._meetings: dict[str, Meeting] = {}
        self._published: dict[str, _Published] = {}
        self.oversight = Oversight()
        """Removals, ends and the join/leave journal of the meetings this worker owns."""

    # --- this worker's sessions ------------------------------------------------------------------------

    def start(self, now_us: int) -> list[ClusterAction]:
        """This incarnation's first records: its `Hello`."""
        del now_us
        return [WriteControl(encode_control(Hello(BROADCAST, self.incarnation)))]

    def cluster_id(self, local: int) -> int:
        return cluster_session(self.index, self.incarnation, local)

    def session_opened(self, session: int, meeting_id: str, now_us: int) -> list[ClusterAction]:
        del now_us
        if session in self._local:
            raise WorkerError(f"session {session} is already open")
        self._local[session] = meeting_id
        self.media.session_opened(session, self.cluster_id(session), meeting_id)
        return []

    def signaling_received(self, session: int, data: bytes, now_us: int) -> list[ClusterAction]:
        meeting_id = self._local.get(session)
        if meeting_id is None:
            return []
        record = Signal(0, self.cluster_id(session), meeting_id, data)
        return self._to_owner(meeting_id, record, now_us)

    def datagram_received(self, session: int, data: bytes, now_us: int) -> list[ClusterAction]:
        del now_us
        return self.media.datagram_received(session, data)

    def media_stream_received(
        self, session: int, stream_id: int, data: bytes, end_stream: bool, now_us: int
    ) -> list[ClusterAction]:
        del now_us
        return self.media.media_stream_received(session, stream_id, data, end_stream)

    def media_stream_reset(self, session: int, stream_id: int, now_us: int) -> list[ClusterAction]:
        del now_us
        return self.media.media_stream_reset(session, stream_id)

    def subscriber_lagging(self, session: int, track_id: int, now_us: int) -> list[ClusterAction]:
        meeting_id = self.media.subscriber_lagging(session, track_id)
        if meeting_id is None:
            return []
        return self._to_owner(meeting_id, Lagging(0, self.cluster_id(session), meeting_id, track_id), now_us)

    def session_closed(self, session: int, now_us: int) -> list[ClusterAction]:
        meeting_id = self._local.pop(session, None)
        if meeting_id is None:
            return []
        self.media.session_closed(session)
        return self._to_owner(meeting_id, Closed(0, self.cluster_id(session), meeting_id), now_us)

    def _to_owner(
        self, meeting_id: str, record: Signal | Lagging | Closed, now_us: int
    ) -> list[ClusterAction]:
        owner = owner_index(meeting_id, self.workers)
        if owner == self.index:
            return self._owner_input(record, now_us)
        return [WriteControl(encode_control(_addressed(record, owner)))]

    # --- other workers' records --------------------------------------------------------------------------

    def control_record(self, sender: int, record: ControlRecord, now_us: int) -> list[ClusterAction]:
        """A record from `sender`'s control ring (already decoded; records for others are skipped here)."""
        if record.to not in (self.index, BROADCAST):
            return []
        if isinstance(record, Signal | Lagging | Closed):
            return self._owner_input(record, now_us)
        if isinstance(record, Catalog):
            return list(self.media.apply_catalog(record))
        if isinstance(record, Hello):
            return self._peer_started(sender, record.incarnation)
        if isinstance(record, Rejoin):
            return self._rebuild(sender, record)
        return self._from_owner(record)

    def _from_owner(self, record: Deliver | Close) -> list[ClusterAction]:
        session = record.session
        if not self._mine(session):
            return []
        if isinstance(record, Deliver):
            return [SendSignaling(local_of(session), record.data)]
        return [CloseSession(local_of(session), record.code, record.reason)]

    def media_record(self, record: memoryview) -> list[ClusterAction]:
        return list(self.media.media_record(record))

    def media_gap(self, sender: int, now_us: int) -> list[ClusterAction]:
        """Records of `sender`'s media ring were lost: receivers of its video wait for a keyframe, asked for."""
        actions: list[ClusterAction] = []
        for meeting_id, session, track_id in self.media.media_gap(sender):
            actions += self._to_owner(
                meeting_id, Lagging(0, self.cluster_id(session), meeting_id, track_id), now_us
            )
        return actions

    def tick(self, now_us: int) -> list[ClusterAction]:
        """Called a few times a second: keyframe requests `Meeting` held back by its one-per-second limit go
        out once it allows. On one worker they leave with the publisher's next frame, which the owner of a
        remote publisher never sees."""
        actions: list[ClusterAction] = []
        for meeting_id, meeting in self._meetings.items():
            owed: list[Action] = []
            for track in meeting.tracks.values():
                if track.keyframe_owed:
                    request = track.owed_keyframe_request(now_us)
                    if request is not None:
                        owed.append(request)
            if owed:
                actions += self._route(meeting_id, owed)
        return actions

    def control_gap(self, sender: int) -> list[ClusterAction]:
        """Records of `sender`'s control ring were lost (this worker stalled for a long time): whatever they
        said between `sender` and the sessions of meetings either of them owns cannot be replayed, so those
        sessions are closed and their clients join again, from a state both sides agree on."""
        reason = "lost signaling between workers; join again"
        actions: list[ClusterAction] = []
        for session, meeting_id in list(self._local.items()):
            if owner_index(meeting_id, self.workers) == sender:
                actions.append(CloseSession(session, pb.ERROR_CODE_INTERNAL, reason))
        for session_id in self._sessions:
            if worker_of(session_id) == sender:
                record = Close(sender, session_id, pb.ERROR_CODE_INTERNAL, reason)
                actions.append(WriteControl(encode_control(record)))
        log.warning("control records of worker %d lost: %d sessions closed", sender, len(actions))
        return actions

    def _mine(self, session: int) -> bool:
        return worker_of(session) == self.index and incarnation_of(session) == self.incarnation

    # --- owner --------------------------------------------------------------------------------------------

    def _owner_input(self, record: Signal | Lagging | Closed, now_us: int) -> list[ClusterAction]:
        meeting_id = record.meeting_id
        if owner_index(meeting_id, self.workers) != self.index:
            log.warning("record for a meeting owned elsewhere", extra={"meeting_id": meeting_id})
            return []
        session = self._sessions.get(record.session)
        match record:
            case Signal(data=data):
                if session is None:
                    session = self._sessions[record.session] = Session(
                        record.session,
                        meeting_id,
                        verifier=self._verifier,
                        limits=self._limits,
                        meeting_for=self._meeting,
                    )
                actions = session.signaling_received(data, now_us)
            case Lagging(track_id=track_id):
                actions = session.subscriber_lagging(track_id, now_us) if session is not None else []
            case Closed():
                self._sessions.pop(record.session, None)
                actions = session.transport_closed() if session is not None else []
        return self._route(meeting_id, actions)

    def _meeting(self, meeting_id: str) -> Meeting:
        meeting = self._meetings.get(meeting_id)
        if meeting is None:
            meeting = self._meetings[meeting_id] = Meeting(
                meeting_id, self._limits, self._forget, oversight=self.oversight
            )
        return meeting

    def _forget(self, meeting: Meeting) -> None:
        if self._meetings.get(meeting.meeting_id) is meeting:
            del self._meetings[meeting.meeting_id]

    def host_action(
        self, meeting_id: str, kind: pb.HostAction.Kind, participant_id: str, now_us: int
    ) -> list[ClusterAction]:
        """A host action from the control plane, which sends it to the meeting's owner (this worker);
        `RequestRefusedError` as `control_plane_action`."""
        actions = control_plane_action(
            self._meetings.get(meeting_id),
            self.oversight,
            meeting_id,
            kind=kind,
            participant_id=participant_id,
            now_us=now_us,
        )
        return self._route(meeting_id, actions)

    def snapshot(self) -> list[dict[str, Any]]:
        """The meetings this worker owns, live (`Meeting.snapshot`)."""
        return [meeting.snapshot() for meeting in self._meetings.values()]

    def _route(self, meeting_id: str, actions: list[Action]) -> list[ClusterAction]:
        """The meeting's changed catalog first, then each signaling action to its session's worker. Media
        actions cannot arise here: media never reaches the owner's sessions."""
        routed = self._sync_catalog(meeting_id)
        for action in actions:
            if type(action) is SendSignaling:
                session = action.session
                if self._mine(session):
                    routed.append(SendSignaling(local_of(session), action.data))
                elif worker_of(session) != self.index:
                    routed.append(
                        WriteControl(encode_control(Deliver(worker_of(session), session, action.data)))
                    )
            elif type(action) is CloseSession:
                session = action.session
                if self._mine(session):
                    routed.append(CloseSession(local_of(session), action.code, action.reason))
                elif worker_of(session) != self.index:
                    record = Close(worker_of(session), session, action.code, action.reason)
                    routed.append(WriteControl(encode_control(record)))
                else:
                    self._sessions.pop(session, None)
        return routed

    def _sync_catalog(self, meeting_id: str) -> list[ClusterAction]:
        meeting = self._meetings.get(meeting_id)
        catalog = _catalog_of(meeting_id, meeting)
        hosts = frozenset(worker_of(m.session) for m in catalog.members)
        previous = self._published.get(meeting_id)
        if previous is not None and previous.catalog == catalog and previous.hosts == hosts:
            return []
        targets = hosts if previous is None else hosts | previous.hosts
        if catalog.members:
            self._published[meeting_id] = _Published(catalog, hosts)
        else:
            self._published.pop(meeting_id, None)
        actions: list[ClusterAction] = []
        for worker in sorted(targets):
            if worker == self.index:
                actions += self.media.apply_catalog(catalog)
            else:
                actions.append(WriteControl(encode_control(_addressed(catalog, worker))))
        return actions

    # --- recovery -----------------------------------------------------------------------------------------

    def _peer_started(self, peer: int, incarnation: int) -> list[ClusterAction]:
        """`peer` (re)started: its earlier sessions are gone; the meetings it owns are rebuilt from here."""
        actions: list[ClusterAction] = []
        gone = [s for s in self._sessions if worker_of(s) == peer and incarnation_of(s) != incarnation]
        for session_id in gone:
            session = self._sessions.pop(session_id)
            actions += self._route(session.meeting_id, session.transport_closed())
        for meeting_id, catalog in list(self.media.catalogs.items()):
            if owner_index(meeting_id, self.workers) == peer:
                actions += self._rejoin(peer, catalog)
        if gone:
            log.info("worker %d restarted: %d of its sessions left", peer, len(gone), extra={"worker": peer})
        return actions

    def _rejoin(self, owner: int, catalog: Catalog) -> list[ClusterAction]:
        """The restarted owner lost the meeting: local clients hear that its participants left; the meeting
        as seen from here, less those, goes back to it."""
        meeting_id = catalog.meeting_id
        dead = {m.session for m in catalog.members if worker_of(m.session) == owner}
        local = tuple(
            m.session for m in catalog.members if self._mine(m.session) and local_of(m.session) in self._local
        )
        kept = tuple(
            TrackEntry(
                t.track_id,
                t.publisher,
                t.kind,
                t.codec,
                t.label,
                tuple(s for s in t.subscribers if s not in dead),
            )
            for t in catalog.tracks
            if t.publisher not in dead
        )
        events: list[pb.ServerMessage] = [
            pb.ServerMessage(track_unpublished=pb.TrackUnpublished(track_id=t.track_id))
            for t in catalog.tracks
            if t.publisher in dead
        ]
        for entry in catalog.members:
            if entry.session in dead:
                participant = pb.Participant.FromString(entry.participant)
                left = pb.ParticipantLeft(
                    participant_id=participant.participant_id, reason=pb.ParticipantLeft.REASON_DISCONNECTED
                )
                events.append(pb.ServerMessage(participant_left=left))
        actions: list[ClusterAction] = []
        for message in events:
            actions += messages.broadcast((local_of(s) for s in local), message)
        survivors = tuple(m for m in catalog.members if m.session not in dead)
        actions += self.media.apply_catalog(
            Catalog(owner, meeting_id, catalog.next_track_id, survivors, kept)
        )
        actions.append(
            WriteControl(
                encode_control(Rejoin(owner, meeting_id, catalog.next_track_id, survivors, kept, local))
            )
        )
        log.info(
            "re-registering the meeting (%d participants, %d here) with the restarted owner",
            len(survivors),
            len(local),
            extra={"meeting_id": meeting_id},
        )
        return actions

    def _rebuild(self, sender: int, rejoin: Rejoin) -> list[ClusterAction]:
        """Adopts what is missing of an edge's view of the meeting, telling nobody (they already know); a
        participant that joined again meanwhile keeps its new session. Members of the sender that it no
        longer has leave, as disconnected."""
        meeting_id = rejoin.meeting_id
        if owner_index(meeting_id, self.workers) != self.index:
            return []
        meeting = self._meeting(meeting_id)
        meeting.reserve_track_ids(rejoin.next_track_id)
        for entry in rejoin.members:
            self._adopt_member(meeting, entry)
        for track in rejoin.tracks:
            self._adopt_track(meeting, track)
        actions: list[Action] = []
        still_open = set(rejoin.local)
        for member in list(meeting.members.values()):
            if worker_of(member.session) == sender and member.session not in still_open:
                session = self._sessions.pop(member.session, None)
                if session is not None:
                    actions += session.transport_closed()
        return self._route(meeting_id, actions)

    def _adopt_member(self, meeting: Meeting, entry: MemberEntry) -> None:
        participant = pb.Participant.FromString(entry.participant)
        if participant.participant_id in meeting.members or entry.session in self._sessions:
            return
        member = Member(entry.session, _grant(meeting.meeting_id, participant), e2ee=participant.e2ee)
        member.info = participant
        meeting.members[member.participant_id] = member
        session = Session(
            entry.session,
            meeting.meeting_id,
            verifier=self._verifier,
            limits=self._limits,
            meeting_for=self._meeting,
        )
        session.meeting, session.member = meeting, member
        self._sessions[entry.session] = session

    def _adopt_track(self, meeting: Meeting, entry: TrackEntry) -> None:
        track = meeting.tracks.get(entry.track_id)
        if track is None:
            session = self._sessions.get(entry.publisher)
            publisher = session.member if session is not None else None
            if publisher is None or session is None or session.meeting is not meeting:
                return
            track = Track(
                entry.track_id,
                publisher,
                cast("pb.TrackKind", entry.kind),  # protobuf enum values are ints
                entry.codec,
                entry.label,
            )
            meeting.tracks[entry.track_id] = track
            publisher.published[entry.track_id] = track
        elif track.publisher.session != entry.publisher:
            return
        for subscriber in entry.subscribers:
            session = self._sessions.get(subscriber)
            member = session.member if session is not None else None
            if (
                member is not None
                and session is not None
                and session.meeting is meeting
                and entry.track_id not in member.subscriptions
            ):
                member.subscriptions[entry.track_id] = track
                track.add_subscriber(member)

    def dump(self) -> dict[str, Any]:
        return {
            "meetings": {meeting_id: meeting.dump() for meeting_id, meeting in self._meetings.items()},
            "sessions": len(self._local),
            "cluster": {"index": self.index, "workers": self.workers, **self.media.dump()},
        }


def _addressed(record: Any, to: int) -> Any:
    """The record, addressed to worker `to`."""
    import msgspec  # noqa: PLC0415

    return msgspec.structs.replace(record, to=to)


def _grant(meeting_id: str, participant: pb.Participant) -> JoinGrant:
    """What a re-registered member was granted, as its `Participant` shows it (its token is long verified)."""
    return JoinGrant(
        meeting_id=meeting_id,
        participant_id=participant.participant_id,
        display_name=participant.display_name,
        can_publish=participant.can_publish,
        can_subscribe=participant.can_subscribe,
        expires_at=0,
        token_id="",
        role=ROLE_OF.get(participant.role, Role.PARTICIPANT),
    )


def _catalog_of(meeting_id: str, meeting: Meeting | None) -> Catalog:
    if meeting is None:
        return Catalog(0, meeting_id, 0, (), ())
    members = tuple(MemberEntry(m.session, m.info.SerializeToString()) for m in meeting.members.values())
    tracks = tuple(
        TrackEntry(t.track_id, t.publisher.session, t.kind, t.info.codec, t.info.label, t.fanout)
        for t in meeting.tracks.values()
    )
    return Catalog(0, meeting_id, meeting.next_track_id, members, tracks)
